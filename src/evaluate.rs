//! The `eval` pass as LLM-Pruner's tables report it: perplexity on WikiText2 and PTB (or any
//! text) in windows of `--seq-len` tokens, and zero-shot accuracy on BoolQ, PIQA, HellaSwag,
//! WinoGrande, ARC-e, ARC-c and OpenBookQA scored as lm-evaluation-harness scores them; and the
//! table of results (Markdown, CSV, JSON), one row per `eval` pass.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use prunec_backends::runtime::{Perplexity, TokenRequest};
use prunec_frontends::data::{read_eval_source, token_stream, Bos, TextSource};
use prunec_frontends::tasks::{encode_pair_with, find_task_files, Doc, Outcome, Task, TaskScore, HARNESS_VERSION};
use prunec_ir::Model;
use serde_json::{json, Value};

use crate::device::Device;
use crate::progress::Progress;

/// What the `eval` pass measures, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Perplexity text (repeatable): `FILE` or `NAME=FILE`. A `.parquet` file (the hub's
    /// `wikitext-2-raw-v1/test-00000-of-00001.parquet`, `ptb_text_only`'s files), `wiki.*.raw`,
    /// `ptb.*.txt`, JSONL rows (`text`, `sentence` or `input_ids`), or plain text. Without a NAME,
    /// a path naming wikitext or ptb gives `wikitext2` or `ptb` (the table's columns).
    #[arg(long, value_name = "[NAME=]FILE")]
    pub eval_text: Vec<String>,

    /// The column of Parquet or JSONL rows that holds the text (default: `text`, else `sentence`).
    #[arg(long, value_name = "NAME")]
    pub text_column: Option<String>,

    /// Tokens per perplexity window.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,

    /// Perplexity windows, or task requests, per forward pass.
    #[arg(long, default_value_t = 8)]
    pub eval_batch: usize,

    /// Zero-shot tasks for `eval`: `TASK=FILE`, comma-separated or repeated (tasks: boolq, piqa,
    /// hellaswag, winogrande, arc_easy, arc_challenge, openbookqa; files: the hub's Parquet or
    /// JSONL rows with the datasets' own fields).
    #[arg(long, value_name = "TASK=FILE,...", value_delimiter = ',')]
    pub tasks: Vec<String>,

    /// A folder holding task files under the hub's names (`boolq/validation-*.parquet`,
    /// `ai2_arc/ARC-Easy/test-*.parquet`, `openbookqa/main/test-*.parquet`..., or `TASK.jsonl`).
    #[arg(long, value_name = "DIR")]
    pub tasks_dir: Option<PathBuf>,

    /// Quick runs: only the first N documents of each task and the first N windows of each text.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Tokens the model reads at most per task request (longer ones lose their start), as the
    /// harness's `max_length` (2048 for LLaMA).
    #[arg(long, default_value_t = 2048)]
    pub max_length: usize,

    /// Write the table of results to PREFIX.md, PREFIX.csv and PREFIX.json (by default beside
    /// --report, as REPORT.table.*).
    #[arg(long, value_name = "PREFIX")]
    pub table: Option<PathBuf>,

    /// Where BOS tokens go: `auto` as the tokenizer's configuration adds them (transformers'
    /// `tokenizer(text)`: LLaMA's and Gemma's BOS, none for SmolLM2), `never`, `start` (one at
    /// the very start of a perplexity text: LLM-Pruner's evaluator) or `window` (one per
    /// perplexity window). Zero-shot requests: `auto` as lm-evaluation-harness 0.4.13, `never`
    /// as v0.4.2 (but for Gemma), `start`/`window` a BOS before each.
    #[arg(long, default_value = "auto", value_name = "auto|never|start|window")]
    pub bos: Bos,

    /// Write every zero-shot document's per-choice log-likelihoods, `acc` and `acc_norm` as JSON
    /// lines (one per document and `eval` pass), as the harness's `--log_samples`.
    #[arg(long, value_name = "FILE.jsonl")]
    pub samples: Option<PathBuf>,
}

/// The datasets an `eval` pass reads, by name and file.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Perplexity texts: name, file.
    pub texts: Vec<(String, PathBuf)>,
    /// Tasks: which, file.
    pub tasks: Vec<(Task, PathBuf)>,
}

impl Plan {
    /// Nothing to measure.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty() && self.tasks.is_empty()
    }
}

impl EvalArgs {
    /// Parses `--eval-text`, `--tasks` and `--tasks-dir` into names and files (files are read
    /// later, by the first `eval` pass; unknown task names and repeated names are refused here).
    pub fn plan(&self) -> Result<Plan> {
        let mut plan = Plan::default();
        for spec in &self.eval_text {
            let (name, file) = match split_named(spec) {
                Some((name, file)) => (name.to_string(), PathBuf::from(file)),
                None => (text_name(Path::new(spec)), PathBuf::from(spec)),
            };
            if plan.texts.iter().any(|(n, _)| *n == name) {
                bail!("--eval-text: two texts named `{name}` (name them: --eval-text NAME=FILE)");
            }
            plan.texts.push((name, file));
        }
        for spec in self.tasks.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let Some((name, file)) = spec.split_once('=') else {
                bail!("--tasks {spec}: expected TASK=FILE (e.g. boolq=validation-00000-of-00001.parquet)");
            };
            let task = Task::from_name(name).with_context(|| format!("--tasks {spec}"))?;
            if plan.tasks.iter().any(|(t, _)| *t == task) {
                bail!("--tasks: `{task}` is given twice");
            }
            plan.tasks.push((task, PathBuf::from(file.trim())));
        }
        if let Some(dir) = &self.tasks_dir {
            let found = find_task_files(dir).with_context(|| format!("--tasks-dir {}", dir.display()))?;
            if found.is_empty() {
                bail!("--tasks-dir {}: no task files found (the hub's names, e.g. boolq/validation-00000-of-00001.parquet, or TASK.jsonl)", dir.display());
            }
            for (task, file) in found {
                if !plan.tasks.iter().any(|(t, _)| *t == task) {
                    plan.tasks.push((task, file));
                }
            }
            plan.tasks.sort_by_key(|(t, _)| *t);
        }
        Ok(plan)
    }
}

/// `NAME=FILE` when the part before `=` is a plain name (letters, digits, `_`, `-`, `.`) and the
/// whole is not itself an existing file.
fn split_named(spec: &str) -> Option<(&str, &str)> {
    let (name, file) = spec.split_once('=')?;
    let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    (plain && !Path::new(spec).exists()).then_some((name, file))
}

/// The table's name for an unnamed text: `wikitext2` or `ptb` when the path says so, else the
/// file's stem.
fn text_name(path: &Path) -> String {
    let lower = path.to_string_lossy().to_ascii_lowercase();
    let file = path.file_name().map(|f| f.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if lower.contains("wikitext") || file.starts_with("wiki.") {
        "wikitext2".into()
    } else if lower.contains("ptb") || lower.contains("penn_treebank") {
        "ptb".into()
    } else {
        path.file_stem().map_or_else(|| "text".into(), |s| s.to_string_lossy().into_owned())
    }
}

/// The datasets read and tokenized, once for every `eval` pass of a run.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Perplexity texts: name, file, tokens.
    texts: Vec<(String, PathBuf, Vec<u32>)>,
    /// Tasks: which, file, documents, and every document's requests as tokens, in order.
    tasks: Vec<(Task, PathBuf, Vec<Doc>, Vec<TokenRequest>)>,
    /// Whether each text gave its token ids itself (JSONL `input_ids`) rather than through the
    /// tokenizer, for messages.
    text_ids: Vec<bool>,
}

impl Inputs {
    /// Checks, before any pass runs, that every token id is inside `model`'s vocabulary (naming
    /// where a bad one came from: a text's `input_ids`, or `tokenizer`), and that a batch of
    /// windows fits in memory.
    pub fn check(&self, model: &Model, args: &EvalArgs, tokenizer: &str) -> Result<()> {
        for ((_, file, tokens), &ids) in self.texts.iter().zip(&self.text_ids) {
            let origin = if ids { format!("the `input_ids` of --eval-text {}", file.display()) } else { format!("--eval-text {}, tokenized by {tokenizer}", file.display()) };
            crate::safety::check_token_ids(model, [tokens.as_slice()], &origin)?;
            let batch = args.eval_batch.min(tokens.len() / args.seq_len.max(1)).max(1);
            crate::safety::check_forward_memory(model, batch, args.seq_len, &format!("--eval-batch {} of --seq-len {}", args.eval_batch, args.seq_len))?;
        }
        for (task, file, _, requests) in &self.tasks {
            let origin = format!("task `{task}` ({}), tokenized by {tokenizer}", file.display());
            let rows = requests.iter().flat_map(|r| [r.context.as_slice(), r.continuation.as_slice()]);
            crate::safety::check_token_ids(model, rows, &origin)?;
        }
        Ok(())
    }
}

/// The first `--eval-text` (its file and tokens), for passes that watch one perplexity
/// (`recover`'s `--eval-every`, the studies); `None` when none is given.
pub fn first_text_tokens(args: &EvalArgs, model: &Path, tokenizer: Option<&Path>) -> Result<Option<(PathBuf, Vec<u32>)>> {
    let mut plan = args.plan()?;
    plan.texts.truncate(1);
    plan.tasks.clear();
    if plan.texts.is_empty() {
        return Ok(None);
    }
    let inputs = prepare(&plan, args, model, tokenizer)?;
    Ok(inputs.texts.into_iter().next().map(|(_, file, tokens)| (file, tokens)))
}

/// Reads and tokenizes what `plan` names (the tokenizer only when something needs it).
pub fn prepare(plan: &Plan, args: &EvalArgs, model: &Path, tokenizer: Option<&Path>) -> Result<Inputs> {
    let mut tok = None;
    let mut get_tok = || -> Result<prunec_frontends::tokenizer::Tokenizer> {
        if tok.is_none() {
            tok = Some(crate::session::tokenizer(model, tokenizer)?);
        }
        tok.clone().context("tokenizer")
    };
    let mut texts = Vec::new();
    let mut text_ids = Vec::new();
    for (name, file) in &plan.texts {
        let src = read_eval_source(file, args.text_column.as_deref()).with_context(|| format!("--eval-text {}", file.display()))?;
        let ids_given = matches!(src, TextSource::Tokens(_));
        text_ids.push(ids_given);
        let tokens = match &src {
            TextSource::Tokens(rows) => rows.concat(),
            _ => token_stream(&src, &get_tok()?)?,
        };
        let tok = if args.bos == Bos::Never || (ids_given && args.bos == Bos::Auto) { None } else { Some(get_tok()?) };
        let mut tokens = args.bos.stream(tokens, tok.as_ref(), args.seq_len, ids_given).with_context(|| format!("--eval-text {} with --bos {}", file.display(), args.bos))?;
        if let Some(n) = args.limit {
            tokens.truncate(n.saturating_mul(args.seq_len));
        }
        texts.push((name.clone(), file.clone(), tokens));
    }
    let mut tasks = Vec::new();
    for (task, file) in &plan.tasks {
        let docs = task.load(file, args.limit).with_context(|| format!("task `{task}`"))?;
        let tok = get_tok()?;
        let prefix = tok.bos.or(tok.eos);
        let special = args.bos.request_tokens(&tok).with_context(|| format!("task `{task}` with --bos {}", args.bos))?;
        let mut requests = Vec::new();
        for doc in &docs {
            for r in &doc.requests {
                let (context, continuation) = encode_pair_with(&tok, r, &special, prefix)?;
                if context.is_empty() || continuation.is_empty() {
                    bail!("task `{task}` ({}): a request gives no tokens for its {}: {:?} + {:?}", file.display(), if context.is_empty() { "context (and the tokenizer has no BOS or EOS)" } else { "continuation" }, r.context, r.continuation);
                }
                requests.push(TokenRequest { context, continuation });
            }
        }
        tasks.push((*task, file.clone(), docs, requests));
    }
    Ok(Inputs { texts, tasks, text_ids })
}

/// A perplexity an `eval` pass measured.
#[derive(Debug, Clone)]
pub struct TextResult {
    /// The text's name (`wikitext2`, `ptb`, ...).
    pub name: String,
    /// Its file.
    pub file: String,
    /// What was measured.
    pub perplexity: Perplexity,
    /// The window length.
    pub seq_len: usize,
}

/// A task an `eval` pass scored.
#[derive(Debug, Clone)]
pub struct TaskResult {
    /// The task.
    pub task: Task,
    /// Its file.
    pub file: String,
    /// Its scores.
    pub score: TaskScore,
    /// Every document's log-likelihoods and outcome, in the file's order.
    pub docs: Vec<DocResult>,
}

/// One zero-shot document as the `eval` pass scored it.
#[derive(Debug, Clone)]
pub struct DocResult {
    /// The index of the right choice.
    pub gold: usize,
    /// Each choice's summed log-probability.
    pub loglikelihoods: Vec<f64>,
    /// `acc` and `acc_norm`.
    pub outcome: Outcome,
}

/// What one `eval` pass measured: one row of the table.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The row's label: the passes before it (`original` when none).
    pub label: String,
    /// Parameters of the model evaluated.
    pub params: usize,
    /// Perplexities, in the order given.
    pub texts: Vec<TextResult>,
    /// Task scores, in the order of LLM-Pruner's tables.
    pub tasks: Vec<TaskResult>,
}

/// Runs one `eval` pass on `model`: every text's perplexity, every task's accuracy.
/// With `group_tokens`, the model is streamed layer by layer, that many tokens at a time.
pub fn run(
    args: &EvalArgs,
    device: Device,
    model: &Model,
    inputs: &Inputs,
    label: String,
    group_tokens: Option<usize>,
) -> Result<(Evaluation, String)> {
    let mut summary = String::new();
    let mut eval = Evaluation { label, params: model.params.numel(), texts: Vec::new(), tasks: Vec::new() };
    for (name, file, tokens) in &inputs.texts {
        let windows = tokens.len() / args.seq_len.max(1);
        let mut bar = Progress::new("eval", windows, "windows");
        let progress = |done, _| bar.update(done, name);
        let ppl = match group_tokens {
            Some(group) => crate::device::perplexity_streamed(device, model, tokens, args.seq_len, args.eval_batch, group, progress),
            None => crate::device::perplexity(device, model, tokens, args.seq_len, args.eval_batch, progress),
        }
        .with_context(|| format!("perplexity on {}", file.display()))?;
        bar.finish();
        summary += &format!(
            "perplexity: {:.4} ({} tokens, {} windows of {}, {} predicted; mean NLL {:.6}) [{name}]\n",
            ppl.perplexity, ppl.tokens, ppl.windows, args.seq_len, ppl.predicted, ppl.mean_nll
        );
        eval.texts.push(TextResult { name: name.clone(), file: file.display().to_string(), perplexity: ppl, seq_len: args.seq_len });
    }
    for (task, file, docs, requests) in &inputs.tasks {
        let mut bar = Progress::new(task.name(), requests.len(), "requests");
        let progress = |done, _| bar.update(done, "");
        let lls = match group_tokens {
            Some(group) => {
                crate::device::loglikelihoods_streamed(device, model, requests, args.eval_batch, args.max_length, group, progress)
            }
            None => crate::device::loglikelihoods(device, model, requests, args.eval_batch, args.max_length, progress),
        }
        .with_context(|| format!("task `{task}` on {}", file.display()))?;
        bar.finish();
        let mut at = 0;
        let results: Vec<DocResult> = docs
            .iter()
            .map(|doc| {
                let n = doc.requests.len();
                at += n;
                let loglikelihoods = lls[at - n..at].to_vec();
                DocResult { gold: doc.gold, outcome: Outcome::of(doc, &loglikelihoods), loglikelihoods }
            })
            .collect();
        let outcomes: Vec<Outcome> = results.iter().map(|d| d.outcome).collect();
        let score = TaskScore::of(&outcomes);
        summary += &format!(
            "{}: acc {:.4} ± {:.4}, acc_norm {:.4} ± {:.4} ({} documents)\n",
            task.name(),
            score.acc,
            score.acc_stderr,
            score.acc_norm,
            score.acc_norm_stderr,
            score.docs
        );
        eval.tasks.push(TaskResult { task: *task, file: file.display().to_string(), score, docs: results });
    }
    Ok((eval, summary))
}

impl Evaluation {
    /// The pass's results as the report's JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "label": self.label,
            "params": self.params,
            "perplexity": self.texts.iter().map(|t| json!({
                "name": t.name,
                "text": t.file,
                "perplexity": t.perplexity.perplexity,
                "seq_len": t.seq_len,
                "tokens": t.perplexity.tokens,
                "windows": t.perplexity.windows,
                "predicted_tokens": t.perplexity.predicted,
                "mean_nll": t.perplexity.mean_nll,
            })).collect::<Vec<_>>(),
            "tasks": self.tasks.iter().map(|t| json!({
                "task": t.task.name(),
                "file": t.file,
                "documents": t.score.docs,
                "acc": t.score.acc,
                "acc_stderr": t.score.acc_stderr,
                "acc_norm": t.score.acc_norm,
                "acc_norm_stderr": t.score.acc_norm_stderr,
                "reported": t.task.reported_metric().name(),
            })).collect::<Vec<_>>(),
        })
    }

    fn perplexity(&self, name: &str) -> Option<f64> {
        self.texts.iter().find(|t| t.name == name).map(|t| t.perplexity.perplexity)
    }

    /// The reported metric of `task`, a fraction.
    fn accuracy(&self, task: Task) -> Option<f64> {
        self.tasks.iter().find(|t| t.task == task).map(|t| t.score.get(task.reported_metric()))
    }

    /// Mean of the reported metrics of the tasks measured, and how many.
    fn average(&self) -> (Option<f64>, usize) {
        let values: Vec<f64> = Task::ALL.iter().filter_map(|&t| self.accuracy(t)).collect();
        let n = values.len();
        ((n > 0).then(|| values.iter().sum::<f64>() / n as f64), n)
    }
}

/// The table of results, LLM-Pruner's Table 1: one row per `eval` pass.
#[derive(Debug, Clone)]
pub struct Table<'a> {
    rows: Vec<&'a Evaluation>,
}

const DASH: &str = "—";

impl<'a> Table<'a> {
    /// The table of these passes' results.
    pub fn new(rows: impl IntoIterator<Item = &'a Evaluation>) -> Table<'a> {
        Table { rows: rows.into_iter().collect() }
    }

    /// No `eval` pass ran.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Perplexity columns: `wikitext2` and `ptb` always, then any other text measured.
    fn text_columns(&self) -> Vec<String> {
        let mut cols = vec!["wikitext2".to_string(), "ptb".to_string()];
        let mut seen: BTreeSet<String> = cols.iter().cloned().collect();
        for row in &self.rows {
            for t in &row.texts {
                if seen.insert(t.name.clone()) {
                    cols.push(t.name.clone());
                }
            }
        }
        cols
    }

    /// The table in Markdown: perplexities with two decimals, accuracies in percent (`acc_norm`
    /// for PIQA, HellaSwag, ARC and OBQA, `acc` for BoolQ and WinoGrande), `—` where not measured.
    pub fn to_markdown(&self) -> String {
        let texts = self.text_columns();
        let title = |name: &str| match name {
            "wikitext2" => "WikiText2↓".to_string(),
            "ptb" => "PTB↓".to_string(),
            other => format!("{other}↓"),
        };
        let mut head = vec!["Model".to_string(), "#Params".to_string()];
        head.extend(texts.iter().map(|t| title(t)));
        head.extend(Task::ALL.iter().map(|t| t.title().to_string()));
        head.push("Average".into());
        let mut s = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
        for row in &self.rows {
            let mut cells = vec![row.label.clone(), human_count(row.params)];
            cells.extend(texts.iter().map(|t| row.perplexity(t).map_or(DASH.into(), |p| format!("{p:.2}"))));
            cells.extend(Task::ALL.iter().map(|&t| row.accuracy(t).map_or(DASH.into(), |a| format!("{:.2}", 100.0 * a))));
            cells.push(match row.average() {
                (Some(avg), 7) => format!("{:.2}", 100.0 * avg),
                (Some(avg), n) => format!("{:.2} ({n} of 7)", 100.0 * avg),
                (None, _) => DASH.into(),
            });
            s += &format!("| {} |\n", cells.join(" | "));
        }
        s += &format!(
            "\nPerplexity in windows of {} tokens; zero-shot accuracy in %, prompts and metrics of \
             lm-evaluation-harness {HARNESS_VERSION} (acc_norm for PIQA, HellaSwag, ARC-e, ARC-c and OBQA; \
             acc for BoolQ and WinoGrande); the average is over the tasks measured.\n",
            self.rows.iter().flat_map(|r| r.texts.iter().map(|t| t.seq_len)).next().map_or("—".into(), |l| l.to_string())
        );
        s
    }

    /// The table as CSV: parameters as a count, perplexities with four decimals, accuracies in
    /// percent with two; an empty field where not measured.
    pub fn to_csv(&self) -> String {
        let texts = self.text_columns();
        let mut head = vec!["model".to_string(), "params".to_string()];
        head.extend(texts.iter().map(|t| format!("{t}_ppl")));
        head.extend(Task::ALL.iter().map(|t| t.name().to_string()));
        head.push("average".into());
        let mut s = head.join(",") + "\n";
        for row in &self.rows {
            let mut cells = vec![csv_field(&row.label), row.params.to_string()];
            cells.extend(texts.iter().map(|t| row.perplexity(t).map_or(String::new(), |p| format!("{p:.4}"))));
            cells.extend(Task::ALL.iter().map(|&t| row.accuracy(t).map_or(String::new(), |a| format!("{:.2}", 100.0 * a))));
            cells.push(row.average().0.map_or(String::new(), |a| format!("{:.2}", 100.0 * a)));
            s += &(cells.join(",") + "\n");
        }
        s
    }

    /// The table as JSON: accuracies as fractions (as the harness writes them), `null` where not
    /// measured, every task's `acc` and `acc_norm` with their standard errors.
    pub fn to_json(&self) -> Value {
        let texts = self.text_columns();
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let ppl: serde_json::Map<String, Value> = texts.iter().map(|t| (t.clone(), json!(row.perplexity(t)))).collect();
                let tasks: serde_json::Map<String, Value> = Task::ALL
                    .iter()
                    .map(|&task| {
                        let v = row.tasks.iter().find(|t| t.task == task).map(|t| {
                            json!({
                                "metric": task.reported_metric().name(),
                                "value": t.score.get(task.reported_metric()),
                                "acc": t.score.acc,
                                "acc_stderr": t.score.acc_stderr,
                                "acc_norm": t.score.acc_norm,
                                "acc_norm_stderr": t.score.acc_norm_stderr,
                                "documents": t.score.docs,
                            })
                        });
                        (task.name().to_string(), v.unwrap_or(Value::Null))
                    })
                    .collect();
                let (average, n) = row.average();
                json!({ "model": row.label, "params": row.params, "perplexity": ppl, "tasks": tasks, "average": average, "average_over": n })
            })
            .collect();
        json!({
            "harness": format!("lm-evaluation-harness {HARNESS_VERSION}"),
            "metrics": Task::ALL.iter().map(|t| (t.name().to_string(), json!(t.reported_metric().name()))).collect::<serde_json::Map<_, _>>(),
            "rows": rows,
        })
    }

    /// Writes PREFIX.md, PREFIX.csv and PREFIX.json, each atomically, never over an input and
    /// over existing files only with `force`.
    pub fn write(&self, prefix: &Path, inputs: &[&Path], force: bool) -> Result<()> {
        for (ext, text) in [("md", self.to_markdown()), ("csv", self.to_csv()), ("json", serde_json::to_string_pretty(&self.to_json())? + "\n")] {
            let mut name = prefix.as_os_str().to_owned();
            name.push(format!(".{ext}"));
            let dest = PathBuf::from(name);
            prunec_backends::AtomicPath::write(&dest, text.as_bytes(), inputs, force)?;
        }
        Ok(())
    }
}

/// Writes every document of every task of `evaluations` to `path` as JSON lines (`model`: the
/// pass's label, `task`, `doc_id`, `gold`, `loglikelihoods`, `acc`, `acc_norm`), atomically,
/// never over an input, over an existing file only with `force`.
pub fn write_samples<'a>(evaluations: impl IntoIterator<Item = &'a Evaluation>, path: &Path, inputs: &[&Path], force: bool) -> Result<usize> {
    let mut text = String::new();
    let mut n = 0;
    for eval in evaluations {
        for t in &eval.tasks {
            for (i, d) in t.docs.iter().enumerate() {
                let row = json!({
                    "model": eval.label,
                    "task": t.task.name(),
                    "doc_id": i,
                    "gold": d.gold,
                    "loglikelihoods": d.loglikelihoods,
                    "acc": f64::from(u8::from(d.outcome.acc)),
                    "acc_norm": f64::from(u8::from(d.outcome.acc_norm)),
                });
                text += &(row.to_string() + "\n");
                n += 1;
            }
        }
    }
    prunec_backends::AtomicPath::write(path, text.as_bytes(), inputs, force)?;
    Ok(n)
}

/// `6.74B`, `135.0M`, `234.0K`: parameters as the paper's tables write them.
fn human_count(n: usize) -> String {
    let x = n as f64;
    if x >= 1e9 {
        format!("{:.2}B", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}K", x / 1e3)
    } else {
        n.to_string()
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ppl(name: &str, value: f64) -> TextResult {
        TextResult {
            name: name.into(),
            file: format!("{name}.parquet"),
            perplexity: Perplexity { perplexity: value, mean_nll: value.ln(), tokens: 1280, windows: 10, predicted: 1270 },
            seq_len: 128,
        }
    }

    fn task(task: Task, acc: f64, acc_norm: f64) -> TaskResult {
        TaskResult { task, file: "f".into(), score: TaskScore { docs: 100, acc, acc_stderr: 0.01, acc_norm, acc_norm_stderr: 0.02 }, docs: Vec::new() }
    }

    fn rows() -> (Evaluation, Evaluation) {
        let original = Evaluation {
            label: "original".into(),
            params: 6_738_415_616,
            texts: vec![ppl("wikitext2", 12.62), ppl("ptb", 22.14)],
            tasks: vec![
                task(Task::BoolQ, 0.7318, 0.0),
                task(Task::Piqa, 0.1, 0.7835),
                task(Task::HellaSwag, 0.1, 0.7299),
                task(Task::WinoGrande, 0.6701, 0.0),
                task(Task::ArcEasy, 0.1, 0.6745),
                task(Task::ArcChallenge, 0.1, 0.4138),
                task(Task::OpenBookQa, 0.1, 0.4240),
            ],
        };
        let pruned = Evaluation {
            label: "group,score,prune".into(),
            params: 5_422_000_000,
            texts: vec![ppl("wikitext2", 19.09)],
            tasks: vec![task(Task::BoolQ, 0.5, 0.0), task(Task::Piqa, 0.2, 0.6)],
        };
        (original, pruned)
    }

    #[test]
    fn table_as_the_papers() {
        let (a, b) = rows();
        let table = Table::new([&a, &b]);
        insta::assert_snapshot!(table.to_markdown(), @r"
        | Model | #Params | WikiText2↓ | PTB↓ | BoolQ | PIQA | HellaSwag | WinoGrande | ARC-e | ARC-c | OBQA | Average |
        |---|---|---|---|---|---|---|---|---|---|---|---|
        | original | 6.74B | 12.62 | 22.14 | 73.18 | 78.35 | 72.99 | 67.01 | 67.45 | 41.38 | 42.40 | 63.25 |
        | group,score,prune | 5.42B | 19.09 | — | 50.00 | 60.00 | — | — | — | — | — | 55.00 (2 of 7) |

        Perplexity in windows of 128 tokens; zero-shot accuracy in %, prompts and metrics of lm-evaluation-harness 0.4.2 (acc_norm for PIQA, HellaSwag, ARC-e, ARC-c and OBQA; acc for BoolQ and WinoGrande); the average is over the tasks measured.
        ");
        insta::assert_snapshot!(table.to_csv(), @r#"
        model,params,wikitext2_ppl,ptb_ppl,boolq,piqa,hellaswag,winogrande,arc_easy,arc_challenge,openbookqa,average
        original,6738415616,12.6200,22.1400,73.18,78.35,72.99,67.01,67.45,41.38,42.40,63.25
        "group,score,prune",5422000000,19.0900,,50.00,60.00,,,,,,55.00
        "#);
        let json = table.to_json();
        assert_eq!(json["rows"][1]["perplexity"]["ptb"], Value::Null);
        assert_eq!(json["rows"][1]["tasks"]["hellaswag"], Value::Null);
        assert_eq!(json["rows"][1]["tasks"]["piqa"]["value"], 0.6);
        assert_eq!(json["rows"][1]["average_over"], 2);
        assert_eq!(json["metrics"]["boolq"], "acc");
        assert_eq!(json["harness"], "lm-evaluation-harness 0.4.2");
    }

    #[test]
    fn other_texts_get_their_own_columns() {
        let row = Evaluation { label: "original".into(), params: 234_048, texts: vec![ppl("public", 39.31)], tasks: vec![] };
        let md = Table::new([&row]).to_markdown();
        assert!(md.starts_with("| Model | #Params | WikiText2↓ | PTB↓ | public↓ | BoolQ |"), "{md}");
        assert!(md.contains("| original | 234.0K | — | — | 39.31 | — | — | — | — | — | — | — | — |"), "{md}");
    }

    #[test]
    fn eval_text_names() {
        assert_eq!(text_name(Path::new("data/wikitext-2-raw-v1/test-00000-of-00001.parquet")), "wikitext2");
        assert_eq!(text_name(Path::new("wiki.test.raw")), "wikitext2");
        assert_eq!(text_name(Path::new("ptb.test.txt")), "ptb");
        assert_eq!(text_name(Path::new("x/penn_treebank/validation-00000-of-00001.parquet")), "ptb");
        assert_eq!(text_name(Path::new("public.txt")), "public");
        assert_eq!(split_named("ptb=a/b.parquet"), Some(("ptb", "a/b.parquet")));
        assert_eq!(split_named("/tmp/a=b/c.txt"), None);
    }
}
