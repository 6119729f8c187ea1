//! The run report: JSON (keys kept stable for scripts) written to a temporary path and
//! renamed into place.

use std::path::Path;

use anyhow::Result;
use prunec_backends::runtime::Perplexity;
use serde_json::{json, Value};

/// One pass of the run, as the report records it.
#[derive(Debug, Clone)]
pub struct PassRecord {
    /// The pass's name.
    pub name: String,
    /// Wall time.
    pub seconds: f64,
    /// What it found, for people.
    pub summary: String,
    /// The perplexity an `eval` pass measured, with the text and window length.
    pub perplexity: Option<(Perplexity, String, usize)>,
    /// Everything an `eval` pass measured (perplexities, task scores): a row of the table.
    pub evaluation: Option<crate::evaluate::Evaluation>,
    /// Peak resident memory during the pass, MiB.
    pub peak_rss_mib: Option<f64>,
    /// How the pass held the model: `resident` or `streamed` (layer by layer), for the passes
    /// that run it (`score` with calibration, `eval`).
    pub mode: Option<&'static str>,
}

/// The run report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Model name, architecture, format, source path.
    pub model: Value,
    /// Parameters before any pass.
    pub params_before: usize,
    /// Parameters after the last pass.
    pub params_after: usize,
    /// The passes in order.
    pub passes: Vec<PassRecord>,
    /// Device the backend ran on.
    pub device: String,
    /// The float type it computed in (`f32`, `f64`).
    pub precision: String,
    /// Peak resident memory of the run, MiB.
    pub peak_rss_mib: Option<f64>,
    /// Wall time of the run.
    pub seconds: f64,
    /// What calibration used (text — a path or `embedded` —, samples, loss), when it ran.
    pub calibration: Option<Value>,
    /// Multiply-accumulates per token before and after (linear ops; attention's score and value
    /// products, which grow with the context, are not counted).
    pub macs_per_token: (usize, usize),
    /// Importance statistics per scored group (layer, kind, units, min, mean, max).
    pub importance: Vec<Value>,
    /// Units of every pruned group before and after (layer, kind, before, after).
    pub widths: Vec<Value>,
    /// What `recover` did: data, options, the loss of every step, and the curve
    /// (`curve[]`: step, train_loss, val_loss, perplexity, lr, tokens_per_s).
    pub training: Option<Value>,
    /// What `reconstruct` did: method, damping, calibration, the error of every op before and
    /// after.
    pub reconstruction: Option<Value>,
    /// The memory budget and how it was set (`budget_bytes`, `budget`, `budget_given`,
    /// `resident_forced`).
    pub memory: Option<Value>,
}

/// Multiply-accumulates per token of the linear ops of `model`.
pub fn linear_macs_per_token(model: &prunec_ir::Model) -> usize {
    let g = &model.graph;
    g.node_ids()
        .into_iter()
        .filter(|&id| g.node(id).is_ok_and(|n| matches!(n.op, prunec_ir::Op::Linear)))
        .filter_map(|id| g.inputs(id).get(1).and_then(|w| g.value_type(*w).ok()).map(|t| t.shape.fixed_product()))
        .sum()
}

impl Report {
    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        let evals: Vec<f64> = self.passes.iter().filter_map(|p| p.perplexity.as_ref().map(|e| e.0.perplexity)).collect();
        let pruned = self.params_after != self.params_before;
        let passes: Vec<Value> = self
            .passes
            .iter()
            .map(|p| {
                let mut v = json!({ "name": p.name, "seconds": p.seconds, "peak_rss_mib": p.peak_rss_mib, "summary": p.summary });
                if let Some(mode) = p.mode {
                    v["mode"] = json!(mode);
                }
                if let Some((ppl, text, seq_len)) = &p.perplexity {
                    v["perplexity"] = json!(ppl.perplexity);
                    v["eval"] = json!({
                        "text": text,
                        "seq_len": seq_len,
                        "tokens": ppl.tokens,
                        "windows": ppl.windows,
                        "predicted_tokens": ppl.predicted,
                        "mean_nll": ppl.mean_nll,
                    });
                }
                if let Some(e) = &p.evaluation {
                    v["evaluation"] = e.to_json();
                }
                v
            })
            .collect();
        let table = crate::evaluate::Table::new(self.passes.iter().filter_map(|p| p.evaluation.as_ref()));
        json!({
            "model": self.model,
            "device": self.device,
            "precision": self.precision,
            "params": { "before": self.params_before, "after": self.params_after },
            "ratio": { "achieved": 1.0 - self.params_after as f64 / self.params_before.max(1) as f64 },
            "perplexity": {
                "before": evals.first(),
                "after": if pruned && evals.len() > 1 { evals.last() } else { None },
            },
            "passes": passes,
            "table": if table.is_empty() { Value::Null } else { table.to_json() },
            "calibration": self.calibration,
            "macs_per_token": { "before": self.macs_per_token.0, "after": self.macs_per_token.1 },
            "importance": self.importance,
            "widths": self.widths,
            "training": self.training,
            "reconstruction": self.reconstruction,
            "memory": self.memory,
            "seconds": self.seconds,
            "peak_rss_mib": self.peak_rss_mib,
        })
    }

    /// The report as Markdown, for people.
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write;
        let j = self.to_json();
        let num = |v: &Value| v.as_f64().map_or("—".to_string(), |x| format!("{x:.4}"));
        let mut s = String::new();
        let _ = writeln!(s, "# prunec report: {}\n", j["model"]["name"].as_str().unwrap_or("model"));
        let _ = writeln!(s, "| | |\n|---|---|");
        let _ = writeln!(s, "| model | {} ({}, {}) |", j["model"]["source"].as_str().unwrap_or(""), j["model"]["architecture"].as_str().unwrap_or(""), j["model"]["format"].as_str().unwrap_or(""));
        let _ = writeln!(s, "| parameters before | {} |", self.params_before);
        let _ = writeln!(s, "| parameters after | {} |", self.params_after);
        let _ = writeln!(s, "| ratio achieved | {:.4} |", j["ratio"]["achieved"].as_f64().unwrap_or(0.0));
        let _ = writeln!(s, "| MACs per token (linear ops) | {} → {} |", self.macs_per_token.0, self.macs_per_token.1);
        let _ = writeln!(s, "| perplexity before | {} |", num(&j["perplexity"]["before"]));
        let _ = writeln!(s, "| perplexity after | {} |", num(&j["perplexity"]["after"]));
        let _ = writeln!(s, "| device | {} |", self.device);
        let _ = writeln!(s, "| wall time | {:.2} s |", self.seconds);
        if let Some(rss) = self.peak_rss_mib {
            let _ = writeln!(s, "| peak RSS | {rss:.1} MiB |");
        }
        if let Some(budget) = self.memory.as_ref().and_then(|m| m["budget"].as_str()) {
            let _ = writeln!(s, "| memory budget | {budget} |");
        }
        let _ = writeln!(s, "\n## Passes\n\n| pass | seconds | peak RSS (MiB) | mode | perplexity |\n|---|---|---|---|---|");
        for p in &self.passes {
            let ppl = p.perplexity.as_ref().map_or("".to_string(), |e| format!("{:.4}", e.0.perplexity));
            let rss = p.peak_rss_mib.map_or("".to_string(), |r| format!("{r:.1}"));
            let _ = writeln!(s, "| {} | {:.2} | {rss} | {} | {ppl} |", p.name, p.seconds, p.mode.unwrap_or(""));
        }
        if let Some(curve) = self.training.as_ref().and_then(|t| t["curve"].as_array()) {
            let _ = writeln!(s, "\n## Training\n\n| step | train loss | val loss | perplexity | tokens/s |\n|---|---|---|---|---|");
            for p in curve {
                let _ = writeln!(s, "| {} | {} | {} | {} | {:.0} |", p["step"], num(&p["train_loss"]), num(&p["val_loss"]), num(&p["perplexity"]), p["tokens_per_s"].as_f64().unwrap_or(0.0));
            }
        }
        let table = crate::evaluate::Table::new(self.passes.iter().filter_map(|p| p.evaluation.as_ref()));
        if !table.is_empty() {
            let _ = writeln!(s, "\n## Results\n\n{}", table.to_markdown());
        }
        for p in &self.passes {
            let _ = writeln!(s, "\n### {}\n\n```\n{}```", p.name, p.summary);
        }
        s
    }

    /// Writes the JSON report to `path` and its Markdown twin beside it (`.md`), atomically,
    /// never over an input of the run, over existing files only with `force`.
    pub fn write(&self, path: &Path, inputs: &[&Path], force: bool) -> Result<()> {
        let md_path = path.with_extension("md");
        for (dest, text) in [(path.to_path_buf(), serde_json::to_string_pretty(&self.to_json())? + "\n"), (md_path, self.to_markdown())] {
            prunec_backends::AtomicPath::write(&dest, text.as_bytes(), inputs, force)?;
        }
        Ok(())
    }
}
