//! The zero-shot tasks of LLM-Pruner's tables, defined as lm-evaluation-harness v0.4.2 defines
//! them (`lm_eval/tasks/*/*.yaml` and their `utils.py`), read from the Hugging Face hub's Parquet
//! files or JSONL rows with the datasets' own fields:
//!
//! | task | hub dataset (split the harness uses) | context | choices (each scored after `" "`) |
//! |---|---|---|---|
//! | `boolq` | `google/boolq` or `super_glue`/`boolq` (validation) | `{passage}\nQuestion: {question}?\nAnswer:` | `no`, `yes` |
//! | `piqa` | `piqa` (validation) | `Question: {goal}\nAnswer:` | `sol1`, `sol2` |
//! | `hellaswag` | `Rowan/hellaswag` (validation) | `preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())` | `preprocess(ending)` |
//! | `winogrande` | `winogrande`/`winogrande_xl` (validation) | `sentence[:blank] + option` (one per option) | the sentence after the blank, stripped (the same for both) |
//! | `arc_easy`, `arc_challenge` | `ai2_arc`/`ARC-Easy`, `ARC-Challenge` (test) | `Question: {question}\nAnswer:` | `choices.text` |
//! | `openbookqa` | `openbookqa`/`main` (test) | `{question_stem}` | `choices.text` |
//!
//! Each (context, continuation) pair is scored by the summed log-probability of the continuation's
//! tokens ([`encode_pair`] tokenizes as the harness's `_encode_pair`); [`Outcome::of`] then gives
//! `acc` (the most likely choice is the gold one) and `acc_norm` (the same after dividing each
//! log-likelihood by the choice's length in characters).

use std::path::Path;

use serde_json::Value;

use crate::data::{read_rows, Rows};
use crate::error::{FrontendError, Result};
use crate::tokenizer::{SpecialTokens, Tokenizer};

/// The lm-evaluation-harness version whose prompts and metrics these are.
pub const HARNESS_VERSION: &str = "0.4.2";

/// A zero-shot task of LLM-Pruner's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Task {
    /// BoolQ: yes/no questions about a passage.
    BoolQ,
    /// PIQA: physical commonsense, two solutions.
    Piqa,
    /// HellaSwag: the most plausible ending of an activity, four endings.
    HellaSwag,
    /// WinoGrande: which of two options fills the blank.
    WinoGrande,
    /// ARC-Easy: grade-school science questions.
    ArcEasy,
    /// ARC-Challenge: the harder grade-school science questions.
    ArcChallenge,
    /// OpenBookQA: elementary science questions.
    OpenBookQa,
}

/// Which accuracy a table reports for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// The most likely choice is the gold one.
    Acc,
    /// The most likely choice per character is the gold one.
    AccNorm,
}

impl Metric {
    /// The harness's name of the metric.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Acc => "acc",
            Metric::AccNorm => "acc_norm",
        }
    }
}

impl Task {
    /// Every task, in the order of LLM-Pruner's tables.
    pub const ALL: [Task; 7] =
        [Task::BoolQ, Task::Piqa, Task::HellaSwag, Task::WinoGrande, Task::ArcEasy, Task::ArcChallenge, Task::OpenBookQa];

    /// The harness's name of the task.
    pub fn name(self) -> &'static str {
        match self {
            Task::BoolQ => "boolq",
            Task::Piqa => "piqa",
            Task::HellaSwag => "hellaswag",
            Task::WinoGrande => "winogrande",
            Task::ArcEasy => "arc_easy",
            Task::ArcChallenge => "arc_challenge",
            Task::OpenBookQa => "openbookqa",
        }
    }

    /// The column title in LLM-Pruner's tables.
    pub fn title(self) -> &'static str {
        match self {
            Task::BoolQ => "BoolQ",
            Task::Piqa => "PIQA",
            Task::HellaSwag => "HellaSwag",
            Task::WinoGrande => "WinoGrande",
            Task::ArcEasy => "ARC-e",
            Task::ArcChallenge => "ARC-c",
            Task::OpenBookQa => "OBQA",
        }
    }

    /// Names a task is known by, lower-case: the harness's, the hub's and the tables'.
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            Task::BoolQ => &["boolq"],
            Task::Piqa => &["piqa"],
            Task::HellaSwag => &["hellaswag"],
            Task::WinoGrande => &["winogrande"],
            Task::ArcEasy => &["arc_easy", "arc-easy", "arc-e"],
            Task::ArcChallenge => &["arc_challenge", "arc-challenge", "arc-c"],
            Task::OpenBookQa => &["openbookqa", "obqa"],
        }
    }

    /// The task called `name` (any of its [`aliases`](Task::aliases), any case).
    pub fn from_name(name: &str) -> Result<Task, UnknownTask> {
        let lower = name.trim().to_ascii_lowercase();
        Task::ALL.into_iter().find(|t| t.aliases().contains(&lower.as_str())).ok_or_else(|| UnknownTask(name.to_string()))
    }

    /// The split the harness evaluates: `validation`, or `test` for ARC and OpenBookQA.
    pub fn split(self) -> &'static str {
        match self {
            Task::ArcEasy | Task::ArcChallenge | Task::OpenBookQa => "test",
            _ => "validation",
        }
    }

    /// The metric LLM-Pruner's tables report: `acc_norm` where the harness's results quote it
    /// (PIQA, HellaSwag, ARC, OpenBookQA), `acc` for BoolQ and WinoGrande (which have no other).
    pub fn reported_metric(self) -> Metric {
        match self {
            Task::BoolQ | Task::WinoGrande => Metric::Acc,
            _ => Metric::AccNorm,
        }
    }

    /// The columns a row of this task must have (alternatives where datasets differ).
    fn required_columns(self) -> &'static [&'static [&'static str]] {
        match self {
            Task::BoolQ => &[&["passage"], &["question"], &["label", "answer"]],
            Task::Piqa => &[&["goal"], &["sol1"], &["sol2"], &["label"]],
            Task::HellaSwag => &[&["activity_label"], &["ctx_a"], &["ctx_b"], &["endings"], &["label"]],
            Task::WinoGrande => &[&["sentence"], &["option1"], &["option2"], &["answer"]],
            Task::ArcEasy | Task::ArcChallenge => &[&["question"], &["choices"], &["answerKey"]],
            Task::OpenBookQa => &[&["question_stem"], &["choices"], &["answerKey"]],
        }
    }

    /// The document of row `i` of `rows`: its requests, choices and gold index.
    pub fn doc(self, rows: &Rows, i: usize) -> Result<Doc> {
        if i >= rows.rows.len() {
            return Err(rows.bad(i, "*", format!("no such row (the file has {})", rows.rows.len())));
        }
        let text = |c: &str| rows.text(i, c);
        let doc = match self {
            Task::BoolQ => {
                let context = format!("{}\nQuestion: {}?\nAnswer:", text("passage")?, text("question")?);
                let gold = match rows.column(&["label", "answer"])? {
                    "label" => index(rows, i, "label")?,
                    _ => match rows.rows[i].get("answer") {
                        Some(Value::Bool(b)) => usize::from(*b),
                        other => return Err(rows.bad(i, "answer", format!("not a boolean (found {})", shown(other)))),
                    },
                };
                Doc::new(context, vec!["no".into(), "yes".into()], gold)
            }
            Task::Piqa => Doc::new(
                format!("Question: {}\nAnswer:", text("goal")?),
                vec![text("sol1")?.to_string(), text("sol2")?.to_string()],
                index(rows, i, "label")?,
            ),
            Task::HellaSwag => {
                let ctx = format!("{} {}", text("ctx_a")?, capitalize(text("ctx_b")?));
                let query = hellaswag_preprocess(&format!("{}: {ctx}", text("activity_label")?));
                let endings = strings(rows, i, "endings")?;
                Doc::new(query, endings.iter().map(|e| hellaswag_preprocess(e)).collect(), index(rows, i, "label")?)
            }
            Task::WinoGrande => {
                let sentence = text("sentence")?;
                let blank = sentence.find('_').ok_or_else(|| rows.bad(i, "sentence", "has no blank `_`".into()))?;
                let options = [text("option1")?, text("option2")?];
                let contexts: Vec<String> = options.iter().map(|o| format!("{}{o}", &sentence[..blank])).collect();
                let gold = match text("answer")? {
                    "1" => 0,
                    "2" => 1,
                    other => return Err(rows.bad(i, "answer", format!("`{other}` is neither \"1\" nor \"2\""))),
                };
                let target = sentence[blank + 1..].trim().to_string();
                Doc { requests: contexts.iter().map(|c| Request { context: c.clone(), continuation: format!(" {target}") }).collect(), choices: contexts, gold }
            }
            Task::ArcEasy | Task::ArcChallenge | Task::OpenBookQa => {
                let context = if self == Task::OpenBookQa {
                    text("question_stem")?.to_string()
                } else {
                    format!("Question: {}\nAnswer:", text("question")?)
                };
                let choices = rows.rows[i].get("choices").and_then(Value::as_object);
                let list = |key: &str| -> Result<Vec<String>> {
                    choices
                        .and_then(|c| c.get(key))
                        .and_then(Value::as_array)
                        .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
                        .ok_or_else(|| rows.bad(i, "choices", format!("no `{key}` list of strings")))
                };
                let (texts, labels) = (list("text")?, list("label")?);
                let key = text("answerKey")?;
                // OpenBookQA's yaml strips the key (`answerKey.lstrip()`); ARC's uses it as it is
                let key = if self == Task::OpenBookQa { key.trim_start() } else { key };
                let gold = labels
                    .iter()
                    .position(|l| l == key)
                    .ok_or_else(|| rows.bad(i, "answerKey", format!("`{key}` is not one of the labels {labels:?}")))?;
                Doc::new(context, texts, gold)
            }
        };
        if doc.gold >= doc.choices.len() {
            return Err(rows.bad(i, "label", format!("gold index {} out of {} choices", doc.gold, doc.choices.len())));
        }
        Ok(doc)
    }

    /// Reads the task's documents from `path` (a `.parquet`, `.jsonl` or `.json` file with the
    /// dataset's own fields), the first `limit` when given.
    pub fn load(self, path: &Path, limit: Option<usize>) -> Result<Vec<Doc>> {
        let rows = read_rows(path)?;
        for names in self.required_columns() {
            rows.column(names)?;
        }
        let n = limit.map_or(rows.rows.len(), |l| l.min(rows.rows.len()));
        (0..n).map(|i| self.doc(&rows, i)).collect()
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A task name that is none of [`Task::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task `{0}`; valid tasks: boolq, piqa, hellaswag, winogrande, arc_easy, arc_challenge, openbookqa")]
pub struct UnknownTask(pub String);

/// One log-likelihood to compute: of `continuation` following `context`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The text before.
    pub context: String,
    /// The text scored.
    pub continuation: String,
}

/// One document of a task: a request per choice, the choices (whose lengths normalise
/// `acc_norm`), and the index of the right one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// One request per choice, in the choices' order.
    pub requests: Vec<Request>,
    /// The harness's `doc_to_choice`: the choices as strings (WinoGrande: the contexts).
    pub choices: Vec<String>,
    /// The index of the right choice.
    pub gold: usize,
}

impl Doc {
    /// A document whose choices follow one context after the harness's `target_delimiter`, `" "`.
    fn new(context: String, choices: Vec<String>, gold: usize) -> Doc {
        let requests = choices.iter().map(|c| Request { context: context.clone(), continuation: format!(" {c}") }).collect();
        Doc { requests, choices, gold }
    }
}

/// `acc` and `acc_norm` of one document, as the harness's `process_results` computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The choice with the highest log-likelihood is the gold one.
    pub acc: bool,
    /// The choice with the highest log-likelihood per character (of the choice string, without
    /// the leading space) is the gold one.
    pub acc_norm: bool,
}

impl Outcome {
    /// Scores a document from the log-likelihoods of its choices (in order). Ties go to the first
    /// choice (numpy's `argmax`).
    pub fn of(doc: &Doc, logliks: &[f64]) -> Outcome {
        let pred = argmax(logliks.iter().copied());
        let norm = argmax(logliks.iter().zip(&doc.choices).map(|(ll, c)| ll / c.chars().count() as f64));
        Outcome { acc: pred == Some(doc.gold), acc_norm: norm == Some(doc.gold) }
    }
}

/// The index of the first largest value (numpy's `argmax`: a NaN wins, as it does there).
fn argmax(values: impl Iterator<Item = f64>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in values.enumerate() {
        let better = match best {
            None => true,
            Some((_, b)) => !b.is_nan() && (v.is_nan() || v > b),
        };
        if better {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// A task's score over its documents: the harness's `mean` and its standard error
/// (`sample std / sqrt(n)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskScore {
    /// Documents scored.
    pub docs: usize,
    /// Mean `acc`.
    pub acc: f64,
    /// Standard error of `acc`.
    pub acc_stderr: f64,
    /// Mean `acc_norm`.
    pub acc_norm: f64,
    /// Standard error of `acc_norm`.
    pub acc_norm_stderr: f64,
}

impl TaskScore {
    /// Aggregates documents' outcomes.
    pub fn of(outcomes: &[Outcome]) -> TaskScore {
        let stats = |hits: Vec<bool>| {
            let n = hits.len() as f64;
            let mean = hits.iter().filter(|&&h| h).count() as f64 / n.max(1.0);
            let var = if hits.len() > 1 {
                hits.iter().map(|&h| (f64::from(u8::from(h)) - mean).powi(2)).sum::<f64>() / (n - 1.0)
            } else {
                0.0
            };
            (mean, (var / n.max(1.0)).sqrt())
        };
        let (acc, acc_stderr) = stats(outcomes.iter().map(|o| o.acc).collect());
        let (acc_norm, acc_norm_stderr) = stats(outcomes.iter().map(|o| o.acc_norm).collect());
        TaskScore { docs: outcomes.len(), acc, acc_stderr, acc_norm, acc_norm_stderr }
    }

    /// The value of `metric`.
    pub fn get(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Acc => self.acc,
            Metric::AccNorm => self.acc_norm,
        }
    }
}

/// Tokens of a request as the harness's `_encode_pair` makes them: trailing whitespace of the
/// context moves onto the continuation; the pair is encoded whole and the context alone, and the
/// continuation's tokens are those of the whole after the context's (no special tokens, as
/// v0.4.2 encodes for every model but Gemma). When the context gives no tokens, `prefix` (the
/// harness's `prefix_token_id`: BOS, else EOS) stands for it.
pub fn encode_pair(tok: &Tokenizer, request: &Request, prefix: Option<u32>) -> Result<(Vec<u32>, Vec<u32>)> {
    encode_pair_with(tok, request, &SpecialTokens::default(), prefix)
}

/// [`encode_pair`] with `special` put around each encoded text (the whole and the context), as
/// the harness's `tok_encode` does when it lets the tokenizer add its special tokens
/// ([`crate::data::Bos::request_tokens`]) — except around a text that already starts with the
/// prefix token's text, as 0.4.13 does.
pub fn encode_pair_with(tok: &Tokenizer, request: &Request, special: &SpecialTokens, prefix: Option<u32>) -> Result<(Vec<u32>, Vec<u32>)> {
    let prefix_text = prefix.and_then(|p| tok.token_text(p)).filter(|t| !t.is_empty());
    let encode = |text: &str| -> Result<Vec<u32>> {
        let ids = tok.encode(text)?;
        let has_bos = prefix_text.as_deref().is_some_and(|p| text.starts_with(p));
        Ok(if has_bos { ids } else { special.around(&ids) })
    };
    let trimmed = request.context.trim_end();
    let moved = &request.context[trimmed.len()..];
    let continuation = format!("{moved}{}", request.continuation);
    let whole = encode(&format!("{trimmed}{continuation}"))?;
    let mut context = if trimmed.is_empty() { Vec::new() } else { encode(trimmed)? };
    let cont = whole.get(context.len()..).unwrap_or_default().to_vec();
    if context.is_empty() {
        // an empty context: the continuation alone, after the prefix token
        context.extend(prefix);
        return Ok((context, tok.encode(&continuation)?));
    }
    Ok((context, cont))
}

/// HellaSwag's `preprocess` (harness `lm_eval/tasks/hellaswag/utils.py`): strip, `" [title]"` →
/// `". "`, remove every `[...]` (not across a line break, as the regex `\[.*?\]`), `"  "` → `" "`.
pub fn hellaswag_preprocess(text: &str) -> String {
    let text = text.trim().replace(" [title]", ". ");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        match after.find([']', '\n']) {
            // `[...]` closed on the same line (`.` matches any character but a line break,
            // `[` included): removed
            Some(close) if after.as_bytes()[close] == b']' => {
                out.push_str(&rest[..open]);
                rest = &after[close + 1..];
            }
            // a line break or nothing before `]`: this `[` stays
            _ => {
                out.push_str(&rest[..open + 1]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace("  ", " ")
}

/// Python's `str.capitalize`: the first character upper-case, the rest lower-case.
fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars.flat_map(char::to_lowercase)).collect(),
        None => String::new(),
    }
}

/// An integer label (an integer, or a string of digits as HellaSwag stores it).
fn index(rows: &Rows, i: usize, column: &str) -> Result<usize> {
    let value = rows.rows[i].get(column);
    let index = match value {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(Value::Bool(b)) => Some(usize::from(*b)),
        _ => None,
    };
    index.ok_or_else(|| rows.bad(i, column, format!("not a choice index (found {})", shown(value))))
}

/// A list of strings.
fn strings(rows: &Rows, i: usize, column: &str) -> Result<Vec<String>> {
    let value = rows.rows[i].get(column);
    value
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
        .ok_or_else(|| rows.bad(i, column, format!("not a list of strings (found {})", shown(value))))
}

fn shown(value: Option<&Value>) -> String {
    value.map_or("nothing".to_string(), Value::to_string)
}

/// Finds each task's file under `dir` by the hub's names: a file `NAME.parquet|jsonl|json`, or a
/// file of the task's split (`validation-*.parquet`, `test-*.parquet`...) inside a folder named
/// after the task (`boolq/`, `hellaswag/`, `ai2_arc/ARC-Easy/`, `openbookqa/main/`,
/// `winogrande/winogrande_xl/`...), at most four levels down. A task with no file is left out;
/// a task with several is an error.
pub fn find_task_files(dir: &Path) -> Result<Vec<(Task, std::path::PathBuf)>> {
    let mut files = Vec::new();
    collect_files(dir, 0, &mut files)?;
    files.sort();
    let mut found = Vec::new();
    for task in Task::ALL {
        let matches: Vec<&std::path::PathBuf> = files.iter().filter(|f| task_file_matches(task, dir, f)).collect();
        match matches.as_slice() {
            [] => {}
            [one] => found.push((task, (*one).clone())),
            many => {
                return Err(FrontendError::Corrupt {
                    path: dir.to_path_buf(),
                    format: "tasks folder",
                    reason: format!(
                        "several files for task `{task}`: {} (give one with --tasks {task}=FILE)",
                        many.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                    ),
                })
            }
        }
    }
    Ok(found)
}

fn collect_files(dir: &Path, depth: usize, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| FrontendError::Io { path: dir.to_path_buf(), source })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if depth < 4 {
                collect_files(&path, depth + 1, out)?;
            }
        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "parquet" | "jsonl" | "json")) {
            out.push(path);
        }
    }
    Ok(())
}

fn task_file_matches(task: Task, root: &Path, file: &Path) -> bool {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let aliases: Vec<String> = task.aliases().iter().map(|a| norm(a)).collect();
    let stem = file.file_stem().and_then(|s| s.to_str()).map(norm).unwrap_or_default();
    if aliases.contains(&stem) {
        return true;
    }
    let in_task_folder = file
        .strip_prefix(root)
        .ok()
        .and_then(Path::parent)
        .is_some_and(|p| p.components().any(|c| c.as_os_str().to_str().is_some_and(|c| aliases.contains(&norm(c)))));
    in_task_folder && stem.starts_with(task.split())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/eval").join(rel)
    }

    fn pairs(doc: &Doc) -> Vec<(&str, &str)> {
        doc.requests.iter().map(|r| (r.context.as_str(), r.continuation.as_str())).collect()
    }

    // The expected strings below are written from the harness's task definitions
    // (lm-evaluation-harness v0.4.2), not from this module.

    #[test]
    fn boolq_prompts() {
        let docs = Task::BoolQ.load(&fixture("boolq/validation-00000-of-00001.parquet"), None).unwrap();
        assert_eq!(docs.len(), 3);
        let ctx = "Aurora -- An aurora is a natural light display in the sky, seen mostly in high-latitude regions \
                   around the Arctic and Antarctic.\nQuestion: can you see the northern lights from the equator?\nAnswer:";
        assert_eq!(pairs(&docs[1]), [(ctx, " no"), (ctx, " yes")]);
        assert_eq!(docs[1].choices, ["no", "yes"]);
        assert_eq!((docs[0].gold, docs[1].gold), (1, 0));
        // super_glue's rows (`label`) give the same documents
        let sg = Task::BoolQ.load(&fixture("super_glue-boolq/validation-00000-of-00001.parquet"), None).unwrap();
        assert_eq!(sg, docs);
        assert_eq!(Task::BoolQ.load(&fixture("jsonl/boolq.jsonl"), None).unwrap(), docs);
    }

    #[test]
    fn piqa_prompts() {
        let docs = Task::Piqa.load(&fixture("piqa/validation-00000-of-00001.parquet"), Some(1)).unwrap();
        assert_eq!(docs.len(), 1);
        let ctx = "Question: When boiling butter, when it's ready, you can\nAnswer:";
        assert_eq!(pairs(&docs[0]), [(ctx, " Pour it onto a plate"), (ctx, " Pour it into a jar")]);
        assert_eq!(docs[0].gold, 1);
    }

    #[test]
    fn hellaswag_prompts() {
        let docs = Task::HellaSwag.load(&fixture("hellaswag/validation-00000-of-00001.parquet"), None).unwrap();
        let ctx = "Roof shingle removal: A man is sitting on a roof. He";
        assert_eq!(
            pairs(&docs[0]),
            [
                (ctx, " is using wrap to wrap a pair of skis."),
                (ctx, " is ripping level tiles off."),
                (ctx, " is holding a rubik's cube."),
                (ctx, " starts pulling up roofing on a roof."),
            ]
        );
        assert_eq!(docs[0].gold, 3);
        // WikiHow markup: " [title]" -> ". ", other brackets removed, double spaces halved;
        // ctx_b capitalized ("then" -> "Then")
        let ctx = "Home and Garden: How to clean a grill. Heat the grill for ten minutes. This loosens the grease. Then";
        assert_eq!(docs[1].requests[0].context, ctx);
        assert_eq!(
            docs[1].choices,
            [
                "scrub the grates with a wire brush while they are warm. Wear gloves.",
                "paint the grill. blue.",
                "pour water on the coals.",
                "sell the grill online.",
            ]
        );
        assert_eq!(docs[1].requests[1].continuation, " paint the grill. blue.");
        // an empty ctx_b: the trailing space is stripped
        assert_eq!(docs[2].requests[0].context, "Baking cookies: A woman mixes flour and butter in a bowl.");
        assert_eq!(Task::HellaSwag.load(&fixture("jsonl/hellaswag.jsonl"), None).unwrap(), docs);
    }

    #[test]
    fn hellaswag_preprocess_is_the_harness_regex() {
        assert_eq!(hellaswag_preprocess("  a [b] c  "), "a c");
        assert_eq!(hellaswag_preprocess("x [title] y"), "x. y");
        assert_eq!(hellaswag_preprocess("[a [b] c]"), " c]");
        assert_eq!(hellaswag_preprocess("a [b\nc] d"), "a [b\nc] d");
        assert_eq!(hellaswag_preprocess("a [unclosed"), "a [unclosed");
        assert_eq!(hellaswag_preprocess("a]b[]c"), "a]bc");
        assert_eq!(hellaswag_preprocess("a   b"), "a  b");
        assert_eq!(capitalize("hELLO wORLD"), "Hello world");
        assert_eq!(capitalize(""), "");
    }

    #[test]
    fn winogrande_partial_evaluation() {
        let docs = Task::WinoGrande.load(&fixture("winogrande/winogrande_xl/validation-00000-of-00001.parquet"), None).unwrap();
        assert_eq!(
            pairs(&docs[0]),
            [
                ("Sarah was a much better surgeon than Maria so Sarah", " always got the harder cases."),
                ("Sarah was a much better surgeon than Maria so Maria", " always got the harder cases."),
            ]
        );
        assert_eq!(docs[0].choices, ["Sarah was a much better surgeon than Maria so Sarah", "Sarah was a much better surgeon than Maria so Maria"]);
        assert_eq!(docs[0].gold, 0);
        assert_eq!(pairs(&docs[2])[1], ("Tom", " baked bread every morning, but Tom never learned how."));
    }

    #[test]
    fn arc_and_openbookqa_prompts() {
        let docs = Task::ArcEasy.load(&fixture("ai2_arc/ARC-Easy/test-00000-of-00001.parquet"), None).unwrap();
        let ctx = "Question: Which tool is best for measuring the length of a pencil?\nAnswer:";
        assert_eq!(pairs(&docs[0])[0], (ctx, " a ruler"));
        assert_eq!(pairs(&docs[0])[3], (ctx, " a graduated cylinder"));
        assert_eq!(docs[0].gold, 0);
        // numeric labels ("1".."4")
        assert_eq!(docs[1].gold, 0);
        let c = Task::ArcChallenge.load(&fixture("ai2_arc/ARC-Challenge/test-00000-of-00001.parquet"), None).unwrap();
        assert_eq!((c[0].gold, c[1].gold, c[1].choices.len()), (1, 2, 3));
        let o = Task::OpenBookQa.load(&fixture("openbookqa/main/test-00000-of-00001.parquet"), None).unwrap();
        assert_eq!(pairs(&o[0])[3], ("The sun is responsible for", " plants sprouting, blooming and wilting"));
        assert_eq!(o[0].gold, 3);
        assert_eq!(Task::OpenBookQa.load(&fixture("jsonl/openbookqa.jsonl"), None).unwrap(), o);
    }

    #[test]
    fn acc_and_acc_norm_as_the_harness() {
        let doc = Doc::new("Q:".into(), vec!["ab".into(), "abcdef".into(), "a".into()], 1);
        // acc: the largest log-likelihood; acc_norm: the largest per character
        let o = Outcome::of(&doc, &[-4.0, -6.0, -3.0]);
        assert_eq!(o, Outcome { acc: false, acc_norm: true }); // -2, -1, -3 per character
        let o = Outcome::of(&doc, &[-4.0, -3.0, -5.0]);
        assert_eq!(o, Outcome { acc: true, acc_norm: true });
        // ties go to the first
        let tie = Doc::new("Q:".into(), vec!["x".into(), "y".into()], 1);
        assert_eq!(Outcome::of(&tie, &[-1.0, -1.0]), Outcome { acc: false, acc_norm: false });
        let tie0 = Doc { gold: 0, ..tie };
        assert_eq!(Outcome::of(&tie0, &[-1.0, -1.0]), Outcome { acc: true, acc_norm: true });
        // lengths are characters, not bytes: "é" is one
        let chars = Doc::new("Q:".into(), vec!["éé".into(), "abc".into()], 1);
        assert_eq!(Outcome::of(&chars, &[-2.4, -3.3]), Outcome { acc: false, acc_norm: true });
        let s = TaskScore::of(&[Outcome { acc: true, acc_norm: false }, Outcome { acc: false, acc_norm: false }]);
        assert_eq!((s.docs, s.acc, s.acc_norm), (2, 0.5, 0.0));
        assert!((s.acc_stderr - 0.5).abs() < 1e-12, "{}", s.acc_stderr); // sqrt(0.5 / 2)
        assert_eq!(argmax([f64::NAN, 1.0].into_iter()), Some(0));
        assert_eq!(argmax([1.0, f64::NAN].into_iter()), Some(1));
        assert_eq!(argmax(std::iter::empty()), None);
    }

    #[test]
    fn bad_rows_and_files_are_named() {
        // a PIQA file read as BoolQ: the missing column is named with the file's columns
        let piqa = fixture("piqa/validation-00000-of-00001.parquet");
        let err = Task::BoolQ.load(&piqa, None).unwrap_err().to_string();
        assert!(err.contains("validation-00000-of-00001.parquet") && err.contains("`passage`") && err.contains("goal, sol1"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("w.jsonl");
        std::fs::write(&bad, "{\"sentence\": \"no blank\", \"option1\": \"a\", \"option2\": \"b\", \"answer\": \"1\"}\n").unwrap();
        let err = Task::WinoGrande.load(&bad, None).unwrap_err().to_string();
        assert!(err.contains("w.jsonl") && err.contains("row 0") && err.contains("`sentence`"), "{err}");
        std::fs::write(&bad, "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 2}\n").unwrap();
        let err = Task::Piqa.load(&bad, None).unwrap_err().to_string();
        assert!(err.contains("gold index 2 out of 2"), "{err}");
        std::fs::write(&bad, "{\"goal\": 5, \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}\n").unwrap();
        let err = Task::Piqa.load(&bad, None).unwrap_err().to_string();
        assert!(err.contains("column `goal`: not text (found 5)"), "{err}");
        assert!(Task::Piqa.load(&dir.path().join("none.parquet"), None).is_err());
        let err = Task::from_name("mmlu").unwrap_err().to_string();
        assert!(err.contains("unknown task `mmlu`") && err.contains("hellaswag"), "{err}");
        assert_eq!(Task::from_name("ARC-e"), Ok(Task::ArcEasy));
        assert_eq!(Task::from_name("obqa"), Ok(Task::OpenBookQa));
    }

    #[test]
    fn task_files_are_found_by_the_hubs_names() {
        // the hub's layout, as `huggingface-cli download` leaves it
        let dir = tempfile::tempdir().unwrap();
        let layout = [
            "boolq/validation-00000-of-00001.parquet",
            "piqa/validation-00000-of-00001.parquet",
            "hellaswag/validation-00000-of-00001.parquet",
            "winogrande/winogrande_xl/validation-00000-of-00001.parquet",
            "ai2_arc/ARC-Easy/test-00000-of-00001.parquet",
            "ai2_arc/ARC-Challenge/test-00000-of-00001.parquet",
            "openbookqa/main/test-00000-of-00001.parquet",
        ];
        for rel in layout {
            let to = dir.path().join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(fixture(rel), &to).unwrap();
        }
        // other splits are not taken
        std::fs::copy(fixture(layout[0]), dir.path().join("boolq/train-00000-of-00001.parquet")).unwrap();
        let found = find_task_files(dir.path()).unwrap();
        let got: Vec<(Task, std::path::PathBuf)> = found.into_iter().map(|(t, p)| (t, p.strip_prefix(dir.path()).unwrap().to_path_buf())).collect();
        let want: Vec<(Task, std::path::PathBuf)> = Task::ALL.into_iter().zip(layout.map(std::path::PathBuf::from)).collect();
        assert_eq!(got, want);
        // files named after the tasks
        let jsonl = find_task_files(&fixture("jsonl")).unwrap();
        assert_eq!(jsonl.len(), 7);
        assert!(jsonl.iter().all(|(t, p)| p.file_stem().unwrap() == t.name()));
        // two candidates for one task: refused, both named
        let err = find_task_files(&fixture("")).unwrap_err().to_string();
        assert!(err.contains("several files for task `boolq`") && err.contains("boolq.jsonl"), "{err}");
    }
}
