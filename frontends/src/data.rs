//! Calibration and evaluation text: reading it, drawing calibration samples as LLM-Pruner's
//! `get_examples` does, and cutting a token stream into perplexity windows.
//!
//! Randomness is prunec's own SplitMix64 ([`SplitMix64`]) with unbiased bounded draws
//! (rejection), so a seed gives the same samples in every version of prunec and on every
//! machine; nothing here depends on another crate's generator.

use std::path::Path;

use crate::error::{FrontendError, Result};
use crate::tokenizer::{SpecialTokens, Tokenizer};

/// A small English text embedded in prunec for calibration when the user gives none: about
/// 14 KB of plain prose on everyday subjects (a harbour town, a letter, bridges, bread, a
/// forest walk, libraries, a clockmaker, the weather, a night train, learning a language),
/// written for prunec and dedicated to the public domain (CC0).
pub const EMBEDDED_CALIBRATION_TEXT: &str = include_str!("calibration.txt");

/// Token samples for calibration or evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextSource {
    /// A whole plain text.
    Plain(String),
    /// The `text` fields of JSONL rows.
    Rows(Vec<String>),
    /// The `input_ids` fields of JSONL rows, used as they are.
    Tokens(Vec<Vec<u32>>),
}

/// Why calibration samples could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Tokenizing failed.
    #[error(transparent)]
    Tokenizer(#[from] FrontendError),
    /// `n = 0` samples were asked for.
    #[error("no calibration samples asked for (n = 0)")]
    NoSamples,
    /// The window is shorter than 2 tokens: nothing to predict.
    #[error("a window of {len} tokens is too short: at least 2 are needed")]
    WindowTooShort {
        /// The window length asked for.
        len: usize,
    },
    /// A plain text has fewer tokens than one window.
    #[error("the text has {tokens} tokens, fewer than one window of {len}")]
    TextTooShort {
        /// The text's tokens.
        tokens: usize,
        /// The window length.
        len: usize,
    },
    /// Too few rows are long enough to hold a window (each row is drawn at most once).
    #[error("only {long_enough} of {rows} rows have at least {len} tokens, but {n} samples were asked for")]
    TooFewLongRows {
        /// The rows with at least `len` tokens.
        long_enough: usize,
        /// All rows.
        rows: usize,
        /// The window length.
        len: usize,
        /// The samples asked for.
        n: usize,
    },
    /// Too few token rows for `n` samples.
    #[error("only {rows} token rows, but {n} samples were asked for")]
    TooFewRows {
        /// The rows.
        rows: usize,
        /// The samples asked for.
        n: usize,
    },
    /// A token row is empty.
    #[error("token row {row} is empty")]
    EmptyRow {
        /// Its index (0-based).
        row: usize,
    },
    /// The `start` or `window` rule for a model whose tokenizer names no BOS token.
    #[error("BOS rule `{rule}`: the tokenizer names no BOS token")]
    NoBos {
        /// The rule asked for.
        rule: Bos,
    },
}

/// Where the beginning-of-sequence token goes in evaluation (`--bos`).
///
/// Perplexity (a token stream cut into windows of `seq_len`):
/// * `Auto`: the special tokens the tokenizer's configuration adds to a text (as transformers'
///   `tokenizer(text)` does; see [`Tokenizer::special_tokens`]) around the whole text: a BOS at
///   the very start for LLaMA-1/2 and Gemma tokenizers, nothing for SmolLM2's. Token rows
///   (`input_ids`) are used as they are.
/// * `Never`: no special token.
/// * `Start`: one BOS at the very start of the text, whatever the tokenizer says: LLM-Pruner's
///   evaluator (`ppl_dataset.py` tokenizes the joined text with LLaMA's tokenizer, which adds it),
///   so only the first window starts with it.
/// * `Window`: every window is a BOS and `seq_len − 1` text tokens.
///
/// Zero-shot requests: `Auto` gives each text (the context, the context with its continuation)
/// the tokenizer's special tokens, as lm-evaluation-harness 0.4.13 does (its `add_bos_token`
/// unset: the tokenizer's default); `Never` none, as v0.4.2 does for every model but Gemma
/// (`add_special_tokens=False`); `Start` and `Window` a BOS before each, as v0.4.2 does for Gemma
/// (`add_bos_token=True`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bos {
    /// As the tokenizer's configuration says.
    #[default]
    Auto,
    /// None.
    Never,
    /// One at the very start of the text.
    Start,
    /// One at the start of every window.
    Window,
}

impl Bos {
    /// Every rule, by name.
    pub const ALL: [(Bos, &'static str); 4] = [(Bos::Auto, "auto"), (Bos::Never, "never"), (Bos::Start, "start"), (Bos::Window, "window")];

    /// The rule's name (`auto`, `never`, `start`, `window`).
    pub fn name(self) -> &'static str {
        Bos::ALL.iter().find(|(b, _)| *b == self).map_or("auto", |(_, n)| n)
    }

    /// The perplexity stream of a text: `tokens` (without special tokens, as [`token_stream`]
    /// gives them) with BOS tokens placed by the rule, for windows of `seq_len`. `ids_given`:
    /// the tokens were given as `input_ids` rows (`Auto` then leaves them as they are).
    pub fn stream(
        self,
        tokens: Vec<u32>,
        tok: Option<&Tokenizer>,
        seq_len: usize,
        ids_given: bool,
    ) -> std::result::Result<Vec<u32>, DataError> {
        let bos = || tok.and_then(|t| t.bos).ok_or(DataError::NoBos { rule: self });
        match self {
            Bos::Never => Ok(tokens),
            Bos::Auto if ids_given => Ok(tokens),
            Bos::Auto => match tok {
                Some(t) => Ok(t.special_tokens()?.around(&tokens)),
                None => Ok(tokens),
            },
            Bos::Start => Ok(std::iter::once(bos()?).chain(tokens).collect()),
            Bos::Window => {
                if seq_len < 2 {
                    return Err(DataError::WindowTooShort { len: seq_len });
                }
                let bos = bos()?;
                let chunks = tokens.chunks_exact(seq_len - 1);
                Ok(chunks.flat_map(|c| std::iter::once(bos).chain(c.iter().copied())).collect())
            }
        }
    }

    /// The special tokens each text of a zero-shot request gets under this rule.
    pub fn request_tokens(self, tok: &Tokenizer) -> std::result::Result<SpecialTokens, DataError> {
        match self {
            Bos::Auto => Ok(tok.special_tokens()?),
            Bos::Never => Ok(SpecialTokens::default()),
            Bos::Start | Bos::Window => {
                let bos = tok.bos.ok_or(DataError::NoBos { rule: self })?;
                Ok(SpecialTokens { prefix: vec![bos], suffix: Vec::new() })
            }
        }
    }
}

impl std::fmt::Display for Bos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--bos` value that is none of [`Bos::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown BOS rule `{0}`; valid rules: auto, never, start, window")]
pub struct UnknownBos(pub String);

impl std::str::FromStr for Bos {
    type Err = UnknownBos;

    fn from_str(s: &str) -> std::result::Result<Bos, UnknownBos> {
        let lower = s.trim().to_ascii_lowercase();
        Bos::ALL.iter().find(|(_, n)| *n == lower).map(|(b, _)| *b).ok_or_else(|| UnknownBos(s.to_string()))
    }
}

/// Reads calibration or evaluation text. A `.jsonl` or `.json` file holds one JSON object per
/// line (blank lines skipped), each with a `text` string or an `input_ids` array of token ids
/// (all rows of one kind); a `.json` file may also be one JSON array of such objects. Any other
/// file is plain UTF-8 text. Errors name the file and the line.
pub fn read_text_source(path: &Path) -> Result<TextSource> {
    let (text, ext) = read_utf8(path)?;
    if !matches!(ext.as_deref(), Some("jsonl" | "json")) {
        return Ok(TextSource::Plain(text));
    }
    let mut rows = RowReader { path, texts: Vec::new(), tokens: Vec::new() };
    for (at, row) in json_values(path, &text, ext.as_deref() == Some("json"))? {
        rows.push(&row, &at)?;
    }
    rows.finish()
}

/// The file's text and its lower-case extension.
fn read_utf8(path: &Path) -> Result<(String, Option<String>)> {
    let bytes = std::fs::read(path).map_err(|source| FrontendError::Io { path: path.to_path_buf(), source })?;
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let is_json = matches!(ext.as_deref(), Some("jsonl" | "json"));
    let text = String::from_utf8(bytes).map_err(|e| FrontendError::Corrupt {
        path: path.to_path_buf(),
        format: if is_json { "JSONL" } else { "text" },
        reason: format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
    })?;
    Ok((text, ext))
}

/// The JSON values of a JSONL text (one per non-blank line), or of one JSON array when `array_ok`
/// and the text starts with `[`; each with where it was (`line 3`, `element 2`).
fn json_values(path: &Path, text: &str, array_ok: bool) -> Result<Vec<(String, serde_json::Value)>> {
    if array_ok && text.trim_start().starts_with('[') {
        let array: Vec<serde_json::Value> =
            serde_json::from_str(text).map_err(|e| corrupt(path, format!("line {}: {e}", e.line())))?;
        return Ok(array.into_iter().enumerate().map(|(i, v)| (format!("element {i}"), v)).collect());
    }
    let mut values = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("line {}", i + 1);
        let row: serde_json::Value = serde_json::from_str(line).map_err(|e| corrupt(path, format!("{at}: {e}")))?;
        values.push((at, row));
    }
    Ok(values)
}

/// The rows of a dataset file, each a JSON object: a Parquet file (`.parquet`, as the Hugging
/// Face hub serves datasets), or JSON objects (`.jsonl`, or `.json` lines or array).
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// The file read.
    pub path: std::path::PathBuf,
    /// The columns: a Parquet file's top-level columns, or every key of the JSON rows (sorted).
    pub columns: Vec<String>,
    /// The rows.
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl Rows {
    /// The first of `names` that is a column, or an error naming the file, what was looked for
    /// and the columns there are.
    pub fn column<'n>(&self, names: &[&'n str]) -> Result<&'n str> {
        names.iter().copied().find(|n| self.columns.iter().any(|c| c == n)).ok_or_else(|| FrontendError::MissingColumn {
            path: self.path.clone(),
            column: names.join("` or `"),
            found: self.columns.join(", "),
        })
    }

    /// Column `column` of row `row` as text; an error names the file, row and column otherwise.
    pub fn text(&self, row: usize, column: &str) -> Result<&str> {
        match self.rows.get(row).and_then(|r| r.get(column)) {
            Some(serde_json::Value::String(s)) => Ok(s),
            Some(other) => Err(self.bad(row, column, format!("not text (found {other})"))),
            None => Err(self.bad(row, column, "missing".into())),
        }
    }

    /// An error about one value.
    pub fn bad(&self, row: usize, column: &str, reason: String) -> FrontendError {
        FrontendError::BadValue { path: self.path.clone(), row, column: column.to_string(), reason }
    }
}

/// Reads the rows of a `.parquet`, `.jsonl` or `.json` file (see [`Rows`]).
pub fn read_rows(path: &Path) -> Result<Rows> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if ext.as_deref() == Some("parquet") {
        let table = crate::parquet::read_rows(path)?;
        return Ok(Rows { path: path.to_path_buf(), columns: table.columns, rows: table.rows });
    }
    let (text, ext) = read_utf8(path)?;
    if !matches!(ext.as_deref(), Some("jsonl" | "json")) {
        return Err(FrontendError::Corrupt {
            path: path.to_path_buf(),
            format: "dataset",
            reason: "not a `.parquet`, `.jsonl` or `.json` file".into(),
        });
    }
    let mut rows = Vec::new();
    let mut columns = std::collections::BTreeSet::new();
    for (at, value) in json_values(path, &text, ext.as_deref() == Some("json"))? {
        let serde_json::Value::Object(row) = value else {
            return Err(corrupt(path, format!("{at}: a row must be a JSON object")));
        };
        columns.extend(row.keys().cloned());
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(corrupt(path, "no rows".into()));
    }
    Ok(Rows { path: path.to_path_buf(), columns: columns.into_iter().collect(), rows })
}

/// Columns that hold the text of a perplexity dataset, in the order they are looked for:
/// `text` (WikiText), `sentence` (PTB's `ptb_text_only`).
pub const TEXT_COLUMNS: &[&str] = &["text", "sentence"];

/// Reads a perplexity dataset in the forms people have it, giving the rows LLM-Pruner's
/// `ppl_dataset.py` joins with `"\n\n"` ([`token_stream`]):
///
/// * `.parquet` (the hub's `wikitext-2-raw-v1/test-00000-of-00001.parquet`, `ptb_text_only`'s
///   `penn_treebank/validation-00000-of-00001.parquet`): the rows of `column`, else of the first
///   of [`TEXT_COLUMNS`] the file has;
/// * `.jsonl`/`.json`: as [`read_text_source`] (`text` or `input_ids` rows); with `column`, or
///   when the rows have `sentence` and neither `text` nor `input_ids`, that column's rows;
/// * `.raw` (WikiText's `wiki.test.raw`): one row per line, the line's `\n` kept and blank lines
///   made empty, as the hub's `wikitext` rows were made from these files — so the raw file and
///   the Parquet file give the same tokens;
/// * `ptb.*.txt` (`ptb.test.txt`): one row per line, stripped, as `ptb_text_only`'s rows;
/// * anything else: plain text, tokenized as it is.
pub fn read_eval_source(path: &Path, column: Option<&str>) -> Result<TextSource> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_ascii_lowercase();
    let text_rows = |rows: Rows| -> Result<TextSource> {
        let col = match column {
            Some(c) => rows.column(&[c])?,
            None => rows.column(TEXT_COLUMNS)?,
        };
        let texts = (0..rows.rows.len())
            .map(|i| match rows.rows[i].get(col) {
                Some(serde_json::Value::Null) => Ok(String::new()),
                _ => rows.text(i, col).map(str::to_string),
            })
            .collect::<Result<Vec<_>>>()?;
        if texts.is_empty() {
            return Err(corrupt_as(path, "Parquet", "no rows".into()));
        }
        Ok(TextSource::Rows(texts))
    };
    match ext.as_deref() {
        Some("parquet") => text_rows(read_rows(path)?),
        Some("jsonl" | "json") => {
            if column.is_some() {
                return text_rows(read_rows(path)?);
            }
            match read_rows(path) {
                Ok(rows) if !rows.columns.iter().any(|c| c == "text" || c == "input_ids") && rows.columns.iter().any(|c| c == "sentence") => {
                    text_rows(rows)
                }
                _ => read_text_source(path),
            }
        }
        Some("raw") => {
            let (text, _) = read_utf8(path)?;
            let text = text.replace("\r\n", "\n");
            Ok(TextSource::Rows(
                text.split_inclusive('\n').map(|l| if l.trim().is_empty() { String::new() } else { l.to_string() }).collect(),
            ))
        }
        Some("txt") if name.starts_with("ptb.") => {
            let (text, _) = read_utf8(path)?;
            Ok(TextSource::Rows(text.lines().map(|l| l.trim().to_string()).collect()))
        }
        _ => read_text_source(path),
    }
}

fn corrupt(path: &Path, reason: String) -> FrontendError {
    corrupt_as(path, "JSONL", reason)
}

fn corrupt_as(path: &Path, format: &'static str, reason: String) -> FrontendError {
    FrontendError::Corrupt { path: path.to_path_buf(), format, reason }
}

/// Collects JSONL rows, checking they are all of one kind.
struct RowReader<'p> {
    path: &'p Path,
    texts: Vec<String>,
    tokens: Vec<Vec<u32>>,
}

impl RowReader<'_> {
    fn push(&mut self, row: &serde_json::Value, at: &str) -> Result<()> {
        let err = |what: String| corrupt(self.path, format!("{at}: {what}"));
        let Some(obj) = row.as_object() else {
            return Err(err("a row must be a JSON object with `text` or `input_ids`".into()));
        };
        match (obj.get("text"), obj.get("input_ids")) {
            (Some(text), None) => {
                let text = text.as_str().ok_or_else(|| err("`text` is not a string".into()))?;
                if !self.tokens.is_empty() {
                    return Err(err("a `text` row among `input_ids` rows".into()));
                }
                self.texts.push(text.to_string());
            }
            (None, Some(ids)) => {
                let ids = ids
                    .as_array()
                    .and_then(|a| {
                        a.iter().map(|v| v.as_u64().and_then(|x| u32::try_from(x).ok())).collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| err("`input_ids` is not an array of token ids".into()))?;
                if !self.texts.is_empty() {
                    return Err(err("an `input_ids` row among `text` rows".into()));
                }
                self.tokens.push(ids);
            }
            (Some(_), Some(_)) => return Err(err("a row has both `text` and `input_ids`".into())),
            (None, None) => return Err(err("a row has neither `text` nor `input_ids`".into())),
        }
        Ok(())
    }

    fn finish(self) -> Result<TextSource> {
        if !self.tokens.is_empty() {
            Ok(TextSource::Tokens(self.tokens))
        } else if !self.texts.is_empty() {
            Ok(TextSource::Rows(self.texts))
        } else {
            Err(corrupt(self.path, "no rows".into()))
        }
    }
}

/// `n` random windows of `len` tokens, as LLM-Pruner's `get_examples` draws them, reproducibly
/// from `seed` ([`SplitMix64`]):
///
/// * `Plain`: the whole text is tokenized once; each window start is drawn uniformly from
///   `0..=tokens - len` (windows may overlap or repeat).
/// * `Rows`: rows are drawn uniformly, each at most once, among those not yet drawn; a row with
///   fewer than `len` tokens is passed over; the window start is then drawn uniformly inside the
///   row. Rows are tokenized only when drawn.
/// * `Tokens`: the first `n` rows as they are, each cut to at most `len` tokens.
///
/// Texts are tokenized without special tokens ([`Tokenizer::encode`]).
pub fn calibration_samples(
    src: &TextSource,
    tok: &Tokenizer,
    n: usize,
    len: usize,
    seed: u64,
) -> Result<Vec<Vec<u32>>, DataError> {
    if n == 0 {
        return Err(DataError::NoSamples);
    }
    if len < 2 {
        return Err(DataError::WindowTooShort { len });
    }
    let mut rng = SplitMix64::new(seed);
    match src {
        TextSource::Plain(text) => {
            let ids = tok.encode(text)?;
            if ids.len() < len {
                return Err(DataError::TextTooShort { tokens: ids.len(), len });
            }
            let starts = ids.len() - len + 1;
            Ok((0..n)
                .map(|_| {
                    let s = rng.below(starts);
                    ids[s..s + len].to_vec()
                })
                .collect())
        }
        TextSource::Rows(rows) => {
            let mut left: Vec<usize> = (0..rows.len()).collect();
            // at most one sample per row: never more room than the rows can fill
            let mut samples = Vec::with_capacity(n.min(rows.len()));
            let mut long_enough = 0;
            while samples.len() < n {
                if left.is_empty() {
                    return Err(DataError::TooFewLongRows { long_enough, rows: rows.len(), len, n });
                }
                let row = left.swap_remove(rng.below(left.len()));
                let ids = tok.encode(&rows[row])?;
                if ids.len() < len {
                    continue;
                }
                long_enough += 1;
                let s = rng.below(ids.len() - len + 1);
                samples.push(ids[s..s + len].to_vec());
            }
            Ok(samples)
        }
        TextSource::Tokens(rows) => {
            if rows.len() < n {
                return Err(DataError::TooFewRows { rows: rows.len(), n });
            }
            rows[..n]
                .iter()
                .enumerate()
                .map(|(row, ids)| {
                    if ids.is_empty() {
                        return Err(DataError::EmptyRow { row });
                    }
                    Ok(ids[..ids.len().min(len)].to_vec())
                })
                .collect()
        }
    }
}

/// All tokens of the text, without special tokens: a plain text in one call, rows joined with
/// `"\n\n"` first (as LLM-Pruner joins wikitext), token rows concatenated.
pub fn token_stream(src: &TextSource, tok: &Tokenizer) -> Result<Vec<u32>> {
    match src {
        TextSource::Plain(text) => tok.encode(text),
        TextSource::Rows(rows) => tok.encode(&rows.join("\n\n")),
        TextSource::Tokens(rows) => Ok(rows.concat()),
    }
}

/// Consecutive, non-overlapping windows of exactly `len` tokens; the last partial window is
/// dropped (none when `len` is 0).
pub fn eval_windows(tokens: &[u32], len: usize) -> Vec<&[u32]> {
    if len == 0 {
        return Vec::new();
    }
    tokens.chunks_exact(len).collect()
}

pub use prunec_ir::rng::SplitMix64;

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level tokenizer with no merges: one token per byte of the text.
    fn byte_tokenizer(dir: &Path) -> Tokenizer {
        let mut alphabet: Vec<char> =
            tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet().into_iter().collect();
        alphabet.sort();
        let vocab: serde_json::Map<String, serde_json::Value> =
            alphabet.iter().zip(0u32..).map(|(c, i)| (c.to_string(), i.into())).collect();
        let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": byte_level, "post_processor": null, "decoder": byte_level,
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                      "ignore_merges": false, "vocab": vocab, "merges": []}
        });
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, json.to_string()).unwrap();
        Tokenizer::from_file(&path).unwrap()
    }

    /// Every `--bos` rule on a stream of 10 tokens, windows of 4.
    #[test]
    fn bos_rules_place_the_bos_token() {
        let dir = tempfile::tempdir().unwrap();
        let mut tok = byte_tokenizer(dir.path());
        let tokens: Vec<u32> = (10..20).collect();
        let run = |bos: Bos, tok: &Tokenizer, ids_given: bool| bos.stream(tokens.clone(), Some(tok), 4, ids_given);
        // no BOS token: auto and never leave the text as it is; start and window are refused
        assert_eq!(run(Bos::Auto, &tok, false).unwrap(), tokens);
        assert_eq!(run(Bos::Never, &tok, false).unwrap(), tokens);
        let err = run(Bos::Start, &tok, false).unwrap_err().to_string();
        assert_eq!(err, "BOS rule `start`: the tokenizer names no BOS token");
        assert!(Bos::Window.request_tokens(&tok).is_err());
        tok.bos = Some(7);
        // start: one BOS before the text (LLM-Pruner's); window: a BOS and 3 text tokens per window
        assert_eq!(run(Bos::Start, &tok, false).unwrap(), [7, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
        assert_eq!(run(Bos::Window, &tok, false).unwrap(), [7, 10, 11, 12, 7, 13, 14, 15, 7, 16, 17, 18]);
        assert_eq!(run(Bos::Start, &tok, true).unwrap()[..2], [7, 10]);
        // auto: what the tokenizer adds (this one: nothing, though it names a BOS)
        assert_eq!(run(Bos::Auto, &tok, false).unwrap(), tokens);
        assert!(matches!(Bos::Window.stream(tokens.clone(), Some(&tok), 1, false), Err(DataError::WindowTooShort { len: 1 })));
        // requests: auto the tokenizer's, never none, start and window a BOS
        assert_eq!(Bos::Auto.request_tokens(&tok).unwrap(), SpecialTokens::default());
        assert_eq!(Bos::Never.request_tokens(&tok).unwrap(), SpecialTokens::default());
        for bos in [Bos::Start, Bos::Window] {
            assert_eq!(bos.request_tokens(&tok).unwrap(), SpecialTokens { prefix: vec![7], suffix: vec![] });
        }
        // a LLaMA-style tokenizer (its class adds the BOS by default): auto is start
        std::fs::write(dir.path().join("tokenizer_config.json"), r#"{"tokenizer_class": "LlamaTokenizerFast", "bos_token": "!"}"#).unwrap();
        let llama = Tokenizer::from_file(&dir.path().join("tokenizer.json")).unwrap();
        let bang = llama.token_id("!").unwrap();
        assert_eq!(llama.bos, Some(bang));
        assert_eq!(run(Bos::Auto, &llama, false).unwrap(), [&[bang][..], &tokens].concat());
        assert_eq!(run(Bos::Auto, &llama, false).unwrap(), run(Bos::Start, &llama, false).unwrap());
        assert_eq!(run(Bos::Auto, &llama, true).unwrap(), tokens, "input_ids are used as they are");
        assert_eq!(Bos::Auto.request_tokens(&llama).unwrap(), SpecialTokens { prefix: vec![bang], suffix: vec![] });
        // names
        for (bos, name) in Bos::ALL {
            assert_eq!(name.parse::<Bos>(), Ok(bos));
            assert_eq!(bos.to_string(), name);
        }
        assert_eq!(" Start ".parse::<Bos>(), Ok(Bos::Start));
        assert_eq!("first".parse::<Bos>().unwrap_err().to_string(), "unknown BOS rule `first`; valid rules: auto, never, start, window");
    }

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_plain_text_and_jsonl_rows() {
        let dir = tempfile::tempdir().unwrap();
        let plain = write(dir.path(), "a.txt", " leading spaces\n\nkept\n");
        assert_eq!(read_text_source(&plain).unwrap(), TextSource::Plain(" leading spaces\n\nkept\n".into()));
        let rows = write(dir.path(), "r.jsonl", "{\"text\": \"one\"}\n\n{\"text\": \"two\", \"meta\": 3}\n");
        assert_eq!(read_text_source(&rows).unwrap(), TextSource::Rows(vec!["one".into(), "two".into()]));
        let ids = write(dir.path(), "t.JSONL", "{\"input_ids\": [1, 2, 3]}\n{\"input_ids\": [4]}\n");
        assert_eq!(read_text_source(&ids).unwrap(), TextSource::Tokens(vec![vec![1, 2, 3], vec![4]]));
        let array = write(dir.path(), "a.json", "[{\"text\": \"x\"},\n {\"text\": \"y\"}]");
        assert_eq!(read_text_source(&array).unwrap(), TextSource::Rows(vec!["x".into(), "y".into()]));
        let json_lines = write(dir.path(), "l.json", "{\"text\": \"x\"}\n{\"text\": \"y\"}\n");
        assert_eq!(read_text_source(&json_lines).unwrap(), TextSource::Rows(vec!["x".into(), "y".into()]));
    }

    #[test]
    fn bad_rows_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\"\n", "line 3"),
            ("{\"text\": \"a\"}\n\n{\"input_ids\": [1]}\n", "line 3"),
            ("{\"input_ids\": [1]}\n{\"text\": \"a\"}\n", "line 2"),
            ("{\"txt\": \"a\"}\n", "line 1"),
            ("{\"text\": 5}\n", "line 1"),
            ("{\"input_ids\": [1, -2]}\n", "line 1"),
            ("{\"input_ids\": [4294967296]}\n", "line 1"),
            ("{\"text\": \"a\", \"input_ids\": [1]}\n", "line 1"),
            ("[1, 2]\n", "line 1"),
            ("\n\n", "no rows"),
        ];
        for (i, (text, at)) in cases.iter().enumerate() {
            let path = write(dir.path(), &format!("bad{i}.jsonl"), text);
            let err = read_text_source(&path).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, FrontendError::Corrupt { .. }), "case {i}: {msg}");
            assert!(msg.contains(&format!("bad{i}.jsonl")) && msg.contains(at), "case {i}: {msg}");
        }
        let array = write(dir.path(), "bad.json", "[{\"text\": \"x\"}, {\"nope\": 1}]");
        assert!(read_text_source(&array).unwrap_err().to_string().contains("element 1"));
        let latin1 = dir.path().join("l.txt");
        std::fs::write(&latin1, b"caf\xe9").unwrap();
        assert!(read_text_source(&latin1).unwrap_err().to_string().contains("not UTF-8 (byte 3)"));
        let missing = read_text_source(&dir.path().join("none.txt")).unwrap_err();
        assert!(matches!(missing, FrontendError::Io { .. }));
    }

    #[test]
    fn plain_text_windows_are_reproducible_slices() {
        let dir = tempfile::tempdir().unwrap();
        let tok = byte_tokenizer(dir.path());
        let text: String = (0..200).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let src = TextSource::Plain(text.clone());
        let samples = calibration_samples(&src, &tok, 8, 16, 42).unwrap();
        assert_eq!(samples.len(), 8);
        for s in &samples {
            assert_eq!(s.len(), 16);
            assert!(text.contains(&tok.decode(s).unwrap()));
        }
        assert_eq!(calibration_samples(&src, &tok, 8, 16, 42).unwrap(), samples);
        assert_ne!(calibration_samples(&src, &tok, 8, 16, 43).unwrap(), samples);
        // A text of exactly one window gives that window.
        let one = TextSource::Plain("abcd".into());
        assert_eq!(calibration_samples(&one, &tok, 2, 4, 0).unwrap(), vec![tok.encode("abcd").unwrap(); 2]);
    }

    #[test]
    fn rows_too_short_are_passed_over_and_rows_drawn_once() {
        let dir = tempfile::tempdir().unwrap();
        let tok = byte_tokenizer(dir.path());
        // Long rows are one letter repeated (a window tells its row); odd rows are too short.
        let letter = |i: usize| char::from(b'a' + i as u8);
        let rows: Vec<String> =
            (0..20).map(|i| if i % 2 == 0 { letter(i).to_string().repeat(12) } else { "short".into() }).collect();
        let src = TextSource::Rows(rows.clone());
        let samples = calibration_samples(&src, &tok, 10, 8, 7).unwrap();
        let mut used = std::collections::BTreeSet::new();
        for s in &samples {
            assert_eq!(s.len(), 8);
            let text = tok.decode(s).unwrap();
            let row = rows.iter().position(|r| r.contains(&text)).unwrap();
            assert!(row % 2 == 0);
            used.insert(row);
        }
        assert_eq!(used.len(), 10, "every long row is drawn once");
        assert_eq!(calibration_samples(&src, &tok, 10, 8, 7).unwrap(), samples);
        assert_ne!(calibration_samples(&src, &tok, 10, 8, 8).unwrap(), samples);
        let err = calibration_samples(&src, &tok, 11, 8, 7).unwrap_err();
        assert!(matches!(err, DataError::TooFewLongRows { long_enough: 10, rows: 20, len: 8, n: 11 }), "{err}");
    }

    #[test]
    fn token_rows_are_used_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let tok = byte_tokenizer(dir.path());
        let src = TextSource::Tokens(vec![vec![1, 2, 3, 4, 5], vec![6, 7], vec![8, 9, 10]]);
        assert_eq!(calibration_samples(&src, &tok, 2, 3, 0).unwrap(), [vec![1, 2, 3], vec![6, 7]]);
        assert!(matches!(calibration_samples(&src, &tok, 4, 3, 0), Err(DataError::TooFewRows { rows: 3, n: 4 })));
        let empty = TextSource::Tokens(vec![vec![1, 2], vec![]]);
        assert!(matches!(calibration_samples(&empty, &tok, 2, 3, 0), Err(DataError::EmptyRow { row: 1 })));
        assert_eq!(token_stream(&src, &tok).unwrap(), (1..=10).collect::<Vec<u32>>());
    }

    #[test]
    fn bad_requests_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tok = byte_tokenizer(dir.path());
        let src = TextSource::Plain("abcdef".into());
        assert!(matches!(calibration_samples(&src, &tok, 0, 4, 0), Err(DataError::NoSamples)));
        assert!(matches!(calibration_samples(&src, &tok, 1, 1, 0), Err(DataError::WindowTooShort { len: 1 })));
        let err = calibration_samples(&src, &tok, 1, 7, 0).unwrap_err();
        assert!(matches!(err, DataError::TextTooShort { tokens: 6, len: 7 }), "{err}");
        assert_eq!(err.to_string(), "the text has 6 tokens, fewer than one window of 7");
    }

    #[test]
    fn token_stream_joins_rows_like_llm_pruner() {
        let dir = tempfile::tempdir().unwrap();
        let tok = byte_tokenizer(dir.path());
        let rows = TextSource::Rows(vec!["a b".into(), "c".into()]);
        assert_eq!(token_stream(&rows, &tok).unwrap(), tok.encode("a b\n\nc").unwrap());
        let plain = TextSource::Plain(" x\n".into());
        assert_eq!(token_stream(&plain, &tok).unwrap().len(), 3);
    }

    #[test]
    fn eval_windows_drop_the_partial_last() {
        let tokens: Vec<u32> = (0..10).collect();
        assert_eq!(eval_windows(&tokens, 3), [&[0, 1, 2][..], &[3, 4, 5], &[6, 7, 8]]);
        assert_eq!(eval_windows(&tokens, 5).len(), 2);
        assert!(eval_windows(&tokens, 11).is_empty());
        assert!(eval_windows(&tokens, 0).is_empty());
        // SmolLM2's golden perplexity: 7658 tokens in windows of 128 give 59 windows.
        assert_eq!(eval_windows(&vec![0; 7658], 128).len(), 59);
    }

    fn eval_fixture(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/eval").join(rel)
    }

    #[test]
    fn perplexity_datasets_in_their_hub_and_raw_forms_agree() {
        // WikiText2: the hub's Parquet rows are the raw file's lines, blank ones empty
        let parquet = read_eval_source(&eval_fixture("wikitext-2-raw-v1/test-00000-of-00001.parquet"), None).unwrap();
        let raw = read_eval_source(&eval_fixture("wiki.test.raw"), None).unwrap();
        assert_eq!(parquet, raw);
        let TextSource::Rows(rows) = &parquet else { panic!("{parquet:?}") };
        assert_eq!(rows[..3], ["", " = Harbour Lights = \n", ""]);
        // PTB: `sentence` rows, and ptb.test.txt's lines stripped
        let ptb = read_eval_source(&eval_fixture("penn_treebank/test-00000-of-00001.parquet"), None).unwrap();
        assert_eq!(read_eval_source(&eval_fixture("ptb.test.txt"), None).unwrap(), ptb);
        let TextSource::Rows(rows) = &ptb else { panic!("{ptb:?}") };
        assert_eq!(rows[0], "no it was n't black monday");
        // joined as LLM-Pruner's ppl_dataset.py joins them: "\n\n".join(rows)
        let dir = tempfile::tempdir().unwrap();
        let tok = byte_tokenizer(dir.path());
        assert_eq!(token_stream(&ptb, &tok).unwrap(), tok.encode(&rows.join("\n\n")).unwrap());
        // JSONL rows with `sentence`, or any column named
        let jsonl = write(dir.path(), "ptb.jsonl", "{\"sentence\": \"a b\"}\n{\"sentence\": \"c\"}\n");
        assert_eq!(read_eval_source(&jsonl, None).unwrap(), TextSource::Rows(vec!["a b".into(), "c".into()]));
        let other = write(dir.path(), "o.jsonl", "{\"body\": \"x\", \"text\": \"t\"}\n");
        assert_eq!(read_eval_source(&other, Some("body")).unwrap(), TextSource::Rows(vec!["x".into()]));
        assert_eq!(read_eval_source(&other, None).unwrap(), TextSource::Rows(vec!["t".into()]));
        // plain text stays plain
        let plain = write(dir.path(), "p.txt", "plain\n");
        assert_eq!(read_eval_source(&plain, None).unwrap(), TextSource::Plain("plain\n".into()));
    }

    #[test]
    fn a_missing_text_column_names_file_and_columns() {
        let piqa = eval_fixture("piqa/validation-00000-of-00001.parquet");
        let err = read_eval_source(&piqa, None).unwrap_err();
        assert!(matches!(err, FrontendError::MissingColumn { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("validation-00000-of-00001.parquet") && msg.contains("`text` or `sentence`") && msg.contains("goal, sol1, sol2, label"), "{msg}");
        let err = read_eval_source(&piqa, Some("label")).unwrap_err().to_string();
        assert!(err.contains("row 0, column `label`: not text (found 1)"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let corrupt = write(dir.path(), "c.parquet", "not parquet");
        let err = read_eval_source(&corrupt, None).unwrap_err().to_string();
        assert!(err.contains("c.parquet") && err.contains("Parquet"), "{err}");
    }

    /// The generator's sequence is part of prunec's reproducibility promise: pinned here.
    #[test]
    fn splitmix64_sequence_is_pinned() {
        let mut rng = SplitMix64::new(0);
        assert_eq!(
            [rng.next_u64(), rng.next_u64(), rng.next_u64()],
            [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F]
        );
        let mut rng = SplitMix64::new(42);
        let draws: Vec<usize> = (0..8).map(|_| rng.below(100)).collect();
        let mut again = SplitMix64::new(42);
        assert_eq!(draws, (0..8).map(|_| again.below(100)).collect::<Vec<_>>());
        assert_eq!(SplitMix64::new(1).below(0), 0);
        assert_eq!(SplitMix64::new(1).below(1), 0);
        // Uniform enough: each of 10 buckets gets 10% ± 1% of 100k draws.
        let mut counts = [0usize; 10];
        let mut rng = SplitMix64::new(7);
        for _ in 0..100_000 {
            counts[rng.below(10)] += 1;
        }
        assert!(counts.iter().all(|&c| (9_000..11_000).contains(&c)), "{counts:?}");
    }
}
