//! Studies over many prunings of one model, as the paper's figures and ablations make them:
//!
//! - `prunec sweep`: perplexity against the pruning ratio for chosen importance estimators and
//!   aggregations (Fig. 4, Table 7), optionally beside the same pruning without dependency
//!   groups (Table 6: each weight pruned on its own);
//! - `prunec sensitivity`: perplexity when only layer `i` is pruned, for every `i` (Fig. 3).
//!
//! The model is read, grouped and calibrated once; every point prunes a copy of it and measures
//! its perplexity. Each writes a table as Markdown, CSV and JSON, and a chart as SVG and PNG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use prunec_ir::{CalibrationStats, Model};
use prunec_passes::prune::{self, Amount, Selection};
use prunec_passes::reconstruct::Reconstruction;
use prunec_passes::{Aggregation, Importance};
use serde_json::{json, Value};

use crate::plot::{Chart, Series};
use crate::report::Report;
use crate::cli::RunArgs;

/// `prunec sweep MODEL --ratios 0.1,0.2 --importance l2,taylor-element1 --eval-text FILE`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// The model, calibration, evaluation and pruning options (as for a run; `--importance`
    /// and `--aggregation` take comma-separated lists here; `--pass`, `--ratio` and `-o` do
    /// not apply).
    #[command(flatten)]
    pub run: RunArgs,

    /// Pruning ratios (fractions of all parameters; with --by-unit, LLM-Pruner's per-group ratio).
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.2,0.3,0.4,0.5")]
    pub ratios: Vec<f64>,

    /// Read --ratios as LLM-Pruner's unit ratio (`current − int(initial·(1−r))` per group).
    #[arg(long)]
    pub by_unit: bool,

    /// Also prune each estimator without dependency groups (every weight on its own, zeroed):
    /// the paper's Table 6 ablation.
    #[arg(long)]
    pub no_dependency: bool,

    /// Allocations to compare, each a row (uniform, global, sensitivity, flap); default: the
    /// run's `--allocate`.
    #[arg(long, value_delimiter = ',', value_parser = parse_allocation)]
    pub allocations: Vec<prune::Allocate>,

    /// Reconstructions to compare after each pruning, each a row (`none`, `bias`, `ls`): the
    /// activations are measured once (`--reconstruct-samples` × `--reconstruct-len` tokens)
    /// and held for every row. Default: none.
    #[arg(long, value_delimiter = ',', value_parser = parse_reconstruction)]
    pub reconstructions: Vec<Option<Reconstruction>>,

    /// Where to write: `<OUT>.md`, `.csv`, `.json`, `.svg`, `.png`.
    #[arg(long, value_name = "STEM", default_value = "sweep")]
    pub out: PathBuf,
}

fn parse_allocation(name: &str) -> std::result::Result<prune::Allocate, String> {
    prune::Allocate::from_name(name).map_err(|e| e.to_string())
}

fn parse_reconstruction(name: &str) -> std::result::Result<Option<Reconstruction>, String> {
    match name {
        "none" => Ok(None),
        other => Reconstruction::from_name(other).map(Some).map_err(|e| format!("{e}, none")),
    }
}

/// `prunec sensitivity MODEL --unit-ratio 0.5 --eval-text FILE`.
#[derive(Debug, clap::Args)]
pub struct SensitivityArgs {
    /// The model, calibration, evaluation and pruning options (as for a run; `--unit-ratio` is
    /// the share of each pruned group, 0.5 by default; `--pass` and `-o` do not apply).
    #[command(flatten)]
    pub run: RunArgs,

    /// Where to write: `<OUT>.md`, `.csv`, `.json`, `.svg`, `.png`.
    #[arg(long, value_name = "STEM", default_value = "sensitivity")]
    pub out: PathBuf,
}

/// One pruned model's measurement.
#[derive(Debug, Clone)]
struct Point {
    /// The method's label (`taylor-element1 (sum)`, `l2 w/o dependency`...).
    method: String,
    importance: Importance,
    aggregation: Aggregation,
    dependency: bool,
    /// The ratio asked for, or the layer pruned.
    x: f64,
    params: usize,
    perplexity: f64,
    seconds: f64,
}

/// What every study shares: the model read and grouped, the evaluation tokens, calibration.
struct Bench<'a> {
    cli: &'a RunArgs,
    path: PathBuf,
    model: Model,
    /// The perplexity text and its tokens.
    text: PathBuf,
    tokens: Vec<u32>,
    stats: Option<CalibrationStats>,
}

impl<'a> Bench<'a> {
    /// Reads and groups the model, tokenizes the evaluation text, and calibrates once when any
    /// of `importances` needs gradients (with the Fisher diagonal when one needs it).
    fn new(cli: &'a RunArgs, importances: &[Importance]) -> Result<Bench<'a>> {
        let Some(path) = cli.model.clone() else { bail!("no MODEL given") };
        let Some((text, tokens)) = crate::evaluate::first_text_tokens(&cli.eval, &path, cli.tokenizer.as_deref())? else {
            bail!("a study measures perplexity: give --eval-text FILE (WikiText2/PTB Parquet, plain text, or JSONL rows)")
        };
        let seq_len = cli.eval.seq_len;
        if tokens.len() < seq_len.max(2) {
            bail!("{}: {} tokens, fewer than one window of --seq-len {seq_len}", text.display(), tokens.len());
        }
        let mut model = crate::session::load(&path)?;
        let origin = format!("--eval-text {}, tokenized by {} (or its `input_ids`)", text.display(), crate::safety::tokenizer_origin(&path, cli.tokenizer.as_deref()));
        crate::safety::check_token_ids(&model, [tokens.as_slice()], &origin)?;
        prunec_passes::run_group(&mut model).context("pass `group`")?;
        let needs = |f: fn(Importance) -> bool| importances.iter().copied().find(|&i| f(i));
        let stats = match needs(Importance::needs_fisher).or_else(|| needs(Importance::needs_gradient)) {
            Some(i) => Some(crate::session::calibrate(cli, &model, &path, i, None, &mut Report::default())?),
            None => None,
        };
        Ok(Bench { cli, path, model, text, tokens, stats })
    }

    fn perplexity(&self, model: &Model) -> Result<f64> {
        let cli = self.cli;
        let ppl = crate::device::perplexity(cli.device, model, &self.tokens, cli.eval.seq_len, cli.eval.eval_batch, |_, _| {})?;
        Ok(ppl.perplexity)
    }

    fn scores(&self, importance: Importance, aggregation: Aggregation) -> Result<prunec_passes::Scores> {
        Ok(prunec_passes::score(&self.model, self.stats.as_ref(), importance, aggregation, self.cli.seed)?)
    }

    /// The pruned copy for `selection`, with dependency groups or without (zeroed).
    fn pruned(&self, selection: &Selection, importance: Importance, dependency: bool) -> Result<Model> {
        if dependency {
            let mut m = self.model.clone();
            prune::apply(&mut m, selection)?;
            Ok(m)
        } else {
            let (m, _) =
                prunec_passes::ablate::without_dependency(&self.model, self.stats.as_ref(), importance, self.cli.seed, selection)?;
            Ok(m)
        }
    }
}

/// `prunec sweep`.
pub fn sweep(args: &SweepArgs) -> Result<()> {
    let cli = &args.run;
    let (importances, aggregations) = (cli.importance.clone(), cli.aggregation.clone());
    if args.ratios.is_empty() || args.ratios.iter().any(|r| !(0.0..1.0).contains(r)) {
        bail!("--ratios {:?}: each must be in [0, 1)", args.ratios);
    }
    crate::safety::check_study_outputs(cli, &args.out)?;
    let start = Instant::now();
    let bench = Bench::new(cli, &importances)?;
    let base = bench.perplexity(&bench.model)?;
    let params = bench.model.params.numel();
    eprintln!("unpruned: {params} parameters, perplexity {base:.4}");
    let allocations = if args.allocations.is_empty() { vec![crate::pipeline::prune_options(cli, Amount::Ratio(0.0)).allocate] } else { args.allocations.clone() };
    let reconstructions = if args.reconstructions.is_empty() { vec![None] } else { args.reconstructions.clone() };
    let mut methods = Vec::new();
    for &i in &importances {
        for &a in &aggregations {
            for &alloc in &allocations {
                for &rec in &reconstructions {
                    methods.push((i, a, true, alloc, rec));
                }
            }
            if args.no_dependency {
                methods.push((i, a, false, allocations[0], None));
            }
        }
    }
    if methods.iter().any(|m| !m.2 && (m.3 == prune::Allocate::Flap || m.4.is_some())) {
        bail!("--no-dependency compares weights pruned alone, without flap allocation or reconstruction");
    }
    // activations, measured once when a row reads them
    let moments = if methods.iter().any(|m| m.3 == prune::Allocate::Flap || m.4.is_some()) {
        let options = crate::pipeline::prune_options(cli, Amount::Ratio(0.0));
        let (m, _) = crate::activations::all_moments(cli, &bench.model, &bench.path, &|g| options.prunes(g), true, "sweep")?;
        Some(m)
    } else {
        None
    };
    let total = methods.len() * args.ratios.len();
    let mut points = Vec::with_capacity(total);
    for &(importance, aggregation, dependency, allocate, reconstruction) in &methods {
        let scores = match (&moments, allocate) {
            (Some(m), prune::Allocate::Flap) => {
                let options = crate::pipeline::prune_options(cli, Amount::Ratio(0.0));
                prunec_passes::reconstruct::fluctuation(&bench.model, m, &|g| options.prunes(g))?
            }
            _ => bench.scores(importance, aggregation)?,
        };
        let mut method = label(importance, aggregation, dependency, aggregations.len() > 1);
        if allocate == prune::Allocate::Flap {
            method = "fluctuation".into();
        }
        if !args.allocations.is_empty() {
            let _ = write!(method, ", {} allocation", allocate.name());
        }
        if reconstructions.len() > 1 || reconstruction.is_some() {
            let _ = write!(method, ", {}", reconstruction.map_or("no reconstruction", |r| r.name()));
        }
        for &ratio in &args.ratios {
            let t = Instant::now();
            let amount = if args.by_unit { Amount::UnitRatio(ratio) } else { Amount::Ratio(ratio) };
            let options = prune::PruneOptions { allocate, ..crate::pipeline::prune_options(cli, amount) };
            let selection = prune::select(&bench.model, &scores, &options)?;
            let mut model = bench.pruned(&selection, importance, dependency)?;
            if let (Some(how), Some(m)) = (reconstruction, &moments) {
                let targets = prunec_passes::reconstruct::targets(&bench.model, &model)?;
                let mut totals = crate::activations::Totals::default();
                crate::activations::reconstruct_targets(how, cli.damp, &bench.model, &mut model, &targets, m, &mut totals, None)?;
                let (before, after) = totals.relative();
                eprintln!("{method} at {ratio}: {} ops reconstructed, summed relative error {before:.4} -> {after:.4}", targets.len());
            }
            // without dependency the weights are zeroed, not removed: count what the grouped pruning keeps
            let kept = if dependency { model.params.numel() } else { bench.pruned(&selection, importance, true)?.params.numel() };
            let perplexity = bench.perplexity(&model)?;
            let seconds = t.elapsed().as_secs_f64();
            points.push(Point { method: method.clone(), importance, aggregation, dependency, x: ratio, params: kept, perplexity, seconds });
            eprintln!("[{}/{total}] {method} at {ratio}: {kept} parameters, perplexity {perplexity:.4} ({seconds:.1} s)", points.len());
        }
    }
    let what = if args.by_unit { "unit ratio" } else { "ratio" };
    let mut md = String::new();
    let _ = writeln!(md, "# Perplexity against pruning {what}\n");
    let _ = writeln!(md, "{}\n", describe(&bench, base));
    let _ = write!(md, "| method |");
    for r in &args.ratios {
        let _ = write!(md, " {r} |");
    }
    let _ = write!(md, "\n|---|");
    for _ in &args.ratios {
        let _ = write!(md, "---:|");
    }
    md.push('\n');
    for chunk in points.chunks(args.ratios.len()) {
        let _ = write!(md, "| {} |", chunk[0].method);
        for p in chunk {
            let _ = write!(md, " {} |", fmt_ppl(p.perplexity));
        }
        md.push('\n');
    }
    let series: Vec<Series> = points
        .chunks(args.ratios.len())
        .map(|c| Series { label: c[0].method.clone(), points: c.iter().map(|p| (p.x, p.perplexity)).collect() })
        .collect();
    let title = format!("{}: perplexity after pruning", bench.model.info.name);
    let chart = Chart {
        title: &title,
        x_label: if args.by_unit { "pruning ratio (LLM-Pruner's, per group)" } else { "pruning ratio (share of parameters)" },
        y_label: "perplexity (log scale)",
        log_y: true,
        series: &series,
        reference: Some(("unpruned", base)),
        integer_x: false,
        legend: plotters::chart::SeriesLabelPosition::UpperLeft,
    };
    write_study(&args.out, &bench, base, what, &points, &md, &chart, start)
}

/// `prunec sensitivity`.
pub fn sensitivity(args: &SensitivityArgs) -> Result<()> {
    let cli = &args.run;
    if cli.ratio.is_some() {
        bail!("sensitivity prunes one layer at a time: give its share as --unit-ratio R (0.5 by default), not --ratio");
    }
    let ratio = cli.unit_ratio.unwrap_or(0.5);
    if !(0.0..1.0).contains(&ratio) {
        bail!("--unit-ratio {ratio} is out of range: it must be in [0, 1)");
    }
    let importance = cli.one_importance()?;
    let aggregation = cli.one_aggregation()?;
    crate::safety::check_study_outputs(cli, &args.out)?;
    let start = Instant::now();
    let bench = Bench::new(cli, &[importance])?;
    let base = bench.perplexity(&bench.model)?;
    let scores = bench.scores(importance, aggregation)?;
    let layers: std::collections::BTreeSet<u32> =
        bench.model.groups.as_deref().unwrap_or_default().iter().filter_map(|g| g.block).collect();
    if layers.is_empty() {
        bail!("{}: no layer has groups to prune", bench.path.display());
    }
    eprintln!("unpruned: perplexity {base:.4}; pruning {ratio} of each group of one layer at a time, {} layers", layers.len());
    let method = label(importance, aggregation, true, true);
    let mut points = Vec::with_capacity(layers.len());
    for &l in &layers {
        let t = Instant::now();
        let mut opts = crate::pipeline::prune_options(cli, Amount::UnitRatio(ratio));
        opts.attn_layers = Some(l..l + 1);
        opts.mlp_layers = Some(l..l + 1);
        let selection = prune::select(&bench.model, &scores, &opts)?;
        let model = bench.pruned(&selection, importance, true)?;
        let perplexity = bench.perplexity(&model)?;
        let seconds = t.elapsed().as_secs_f64();
        let params = model.params.numel();
        points.push(Point { method: method.clone(), importance, aggregation, dependency: true, x: f64::from(l), params, perplexity, seconds });
        eprintln!("[{}/{}] layer {l}: {params} parameters, perplexity {perplexity:.4} ({seconds:.1} s)", points.len(), layers.len());
    }
    let mut md = String::new();
    let _ = writeln!(md, "# Layer sensitivity\n");
    let _ = writeln!(md, "{}; only layer *i* pruned, {ratio} of each of its groups (LLM-Pruner's unit ratio), {method}.\n", describe(&bench, base));
    let _ = writeln!(md, "| layer | parameters | perplexity | × unpruned |\n|---:|---:|---:|---:|");
    for p in &points {
        let _ = writeln!(md, "| {} | {} | {} | {:.3} |", p.x, p.params, fmt_ppl(p.perplexity), p.perplexity / base);
    }
    let series = [Series { label: format!("layer i pruned at {ratio} ({method})"), points: points.iter().map(|p| (p.x, p.perplexity)).collect() }];
    let title = format!("{}: sensitivity of each layer", bench.model.info.name);
    let chart = Chart {
        title: &title,
        x_label: "layer pruned",
        y_label: "perplexity",
        log_y: false,
        series: &series,
        reference: Some(("unpruned", base)),
        integer_x: true,
        legend: plotters::chart::SeriesLabelPosition::UpperRight,
    };
    write_study(&args.out, &bench, base, "layer", &points, &md, &chart, start)
}

fn label(importance: Importance, aggregation: Aggregation, dependency: bool, show_aggregation: bool) -> String {
    let mut s = importance.name().to_string();
    if show_aggregation {
        let _ = write!(s, " ({})", aggregation.name());
    }
    if !dependency {
        s.push_str(" w/o dependency");
    }
    s
}

fn fmt_ppl(p: f64) -> String {
    if p.is_finite() {
        format!("{p:.2}")
    } else {
        "∞".into()
    }
}

fn describe(bench: &Bench<'_>, base: f64) -> String {
    let cli = bench.cli;
    let text = bench.text.display();
    let calib = match (&bench.stats, cli.calib.as_deref()) {
        (None, _) => String::new(),
        (Some(s), Some(p)) => format!(", calibrated on {} samples of `{}` ({} predicted tokens)", s.samples, p.display(), s.tokens),
        (Some(s), None) => format!(", calibrated on {} samples of the embedded text ({} predicted tokens)", s.samples, s.tokens),
    };
    format!(
        "{} ({} parameters): unpruned perplexity {} on {} tokens of `{text}` (windows of {}){calib}",
        bench.model.info.name,
        bench.model.params.numel(),
        fmt_ppl(base),
        bench.tokens.len(),
        cli.eval.seq_len
    )
}

#[allow(clippy::too_many_arguments)]
fn write_study(out: &Path, bench: &Bench<'_>, base: f64, x_name: &str, points: &[Point], md: &str, chart: &Chart<'_>, start: Instant) -> Result<()> {
    let mut csv = format!("method,importance,aggregation,dependency,{},parameters,perplexity,seconds\n", x_name.replace(' ', "_"));
    for p in points {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{:.2}",
            p.method.replace(',', ";"),
            p.importance.name(),
            p.aggregation.name(),
            p.dependency,
            p.x,
            p.params,
            p.perplexity,
            p.seconds
        );
    }
    let json = json!({
        "model": bench.model.info.name,
        "source": bench.path,
        "parameters": bench.model.params.numel(),
        "eval_text": bench.text,
        "seq_len": bench.cli.eval.seq_len,
        "eval_tokens": bench.tokens.len(),
        "calibration": bench.stats.as_ref().map(|s| json!({ "samples": s.samples, "tokens_per_sample": bench.cli.calib_len, "loss": s.loss, "text": bench.cli.calib })),
        "unpruned_perplexity": base,
        "x": x_name,
        "points": points.iter().map(|p| json!({
            "method": p.method, "importance": p.importance.name(), "aggregation": p.aggregation.name(),
            "dependency": p.dependency, "x": p.x, "parameters": p.params, "perplexity": p.perplexity, "seconds": p.seconds,
        })).collect::<Vec<Value>>(),
        "seconds": start.elapsed().as_secs_f64(),
    });
    let stem = |ext: &str| out.with_extension(ext);
    let mut md = md.to_string();
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let _ = writeln!(md, "\n![{}]({name}.png)", chart.title);
    let force = bench.cli.force;
    let json = serde_json::to_string_pretty(&json)? + "\n";
    for (ext, text) in [("md", &md), ("csv", &csv), ("json", &json)] {
        let dest = stem(ext);
        prunec_backends::AtomicPath::write(&dest, text.as_bytes(), &[&bench.path], force)?;
    }
    let [svg, png] = chart.write(out, &[&bench.path], force)?;
    eprintln!(
        "wrote {}, {}, {}, {}, {} in {:.1} s",
        stem("md").display(),
        stem("csv").display(),
        stem("json").display(),
        svg.display(),
        png.display(),
        start.elapsed().as_secs_f64()
    );
    print!("{md}");
    Ok(())
}
