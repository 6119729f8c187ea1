//! Training data for `recover`: Alpaca instruction rows (a JSON array or JSONL of
//! `instruction`, `input`, `output`) tokenized as LLM-Pruner's `post_training.py` does, and
//! plain text cut into windows for causal language modelling.
//!
//! A sample is token ids with, for each position, whether it is a target of the loss
//! (LLM-Pruner's labels other than `-100`). Alpaca rows use Alpaca-LoRA's prompt template
//! (LLM-Pruner's `templates/alpaca.json`); with `train_on_inputs=False`, as LLM-Pruner trains,
//! the prompt's tokens are not targets, only the response's (and the end-of-sequence token).

use std::path::Path;

use crate::data::eval_windows;
use crate::error::{FrontendError, Result};

/// Alpaca's prompt for a row with an input (`{instruction}`, `{input}` filled in).
pub const PROMPT_INPUT: &str = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";

/// Alpaca's prompt for a row without an input.
pub const PROMPT_NO_INPUT: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n";

/// One Alpaca row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlpacaExample {
    /// The task.
    pub instruction: String,
    /// Context for the task (empty: none).
    pub input: String,
    /// The expected response.
    pub output: String,
}

impl AlpacaExample {
    /// The prompt (Prompter.generate_prompt): the template for an input when `input` is not
    /// empty, else the one without; the output appended when `with_output`.
    pub fn prompt(&self, with_output: bool) -> String {
        let mut s = if self.input.is_empty() {
            PROMPT_NO_INPUT.replace("{instruction}", &self.instruction)
        } else {
            // fill `{input}` first, so that an instruction holding "{input}" stays as it is
            PROMPT_INPUT.replace("{input}", &self.input).replacen("{instruction}", &self.instruction, 1)
        };
        if with_output {
            s.push_str(&self.output);
        }
        s
    }
}

/// A training sample: token ids and which of them the loss predicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainSample {
    /// Token ids.
    pub ids: Vec<u32>,
    /// `targets[t]`: token `t` is predicted (from tokens `..t`) in the loss. Position 0 never is.
    pub targets: Vec<bool>,
}

impl TrainSample {
    /// Tokens the loss predicts.
    pub fn predicted(&self) -> usize {
        self.targets.iter().skip(1).filter(|&&t| t).count()
    }
}

fn corrupt(path: &Path, reason: String) -> FrontendError {
    FrontendError::Corrupt { path: path.to_path_buf(), format: "Alpaca JSON", reason }
}

/// Reads Alpaca rows: a JSON array of objects, or JSONL (one object per line, blank lines
/// skipped). `instruction` and `output` are required strings; `input` is optional (empty when
/// absent or null). Errors name the file and the element or line.
pub fn read_alpaca(path: &Path) -> Result<Vec<AlpacaExample>> {
    let bytes = std::fs::read(path).map_err(|source| FrontendError::Io { path: path.to_path_buf(), source })?;
    let text = String::from_utf8(bytes)
        .map_err(|e| corrupt(path, format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to())))?;
    let mut rows = Vec::new();
    if text.trim_start().starts_with('[') {
        let array: Vec<serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| corrupt(path, format!("line {}: {e}", e.line())))?;
        for (i, row) in array.iter().enumerate() {
            rows.push(example(path, row, &format!("element {i}"))?);
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("line {}", i + 1);
            let row: serde_json::Value = serde_json::from_str(line).map_err(|e| corrupt(path, format!("{at}: {e}")))?;
            rows.push(example(path, &row, &at)?);
        }
    }
    if rows.is_empty() {
        return Err(corrupt(path, "no rows".into()));
    }
    Ok(rows)
}

fn example(path: &Path, row: &serde_json::Value, at: &str) -> Result<AlpacaExample> {
    let obj = row
        .as_object()
        .ok_or_else(|| corrupt(path, format!("{at}: a row must be a JSON object with `instruction`, `input`, `output`")))?;
    let field = |key: &str, required: bool| -> Result<String> {
        match obj.get(key) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            None | Some(serde_json::Value::Null) if !required => Ok(String::new()),
            None => Err(corrupt(path, format!("{at}: no `{key}`"))),
            Some(_) => Err(corrupt(path, format!("{at}: `{key}` is not a string"))),
        }
    };
    Ok(AlpacaExample { instruction: field("instruction", true)?, input: field("input", false)?, output: field("output", true)? })
}

/// The sample of one Alpaca row, as LLM-Pruner's `generate_and_tokenize_prompt` makes it with
/// `train_on_inputs=False`: the full prompt (with the output) tokenized by `encode` (which adds
/// the tokenizer's special tokens, as HF's `tokenizer(prompt)` does), cut to `cutoff_len`
/// tokens, `eos` appended when it is not last already and the sample is shorter than
/// `cutoff_len`; the tokens of the prompt alone (also cut to `cutoff_len`) are not targets.
pub fn alpaca_sample<E>(
    example: &AlpacaExample,
    encode: impl Fn(&str) -> std::result::Result<Vec<u32>, E>,
    eos: Option<u32>,
    cutoff_len: usize,
) -> std::result::Result<TrainSample, E> {
    let mut ids = encode(&example.prompt(true))?;
    ids.truncate(cutoff_len);
    if let Some(eos) = eos {
        if ids.last() != Some(&eos) && ids.len() < cutoff_len {
            ids.push(eos);
        }
    }
    let mut prompt_len = encode(&example.prompt(false))?.len().min(cutoff_len);
    // a prompt whose last token merges with the output's first may tokenize one longer
    prompt_len = prompt_len.min(ids.len());
    let targets = (0..ids.len()).map(|t| t >= prompt_len && t > 0).collect();
    Ok(TrainSample { ids, targets })
}

/// Causal-LM samples of a token stream: consecutive windows of `cutoff_len` tokens (the last
/// partial window dropped, as [`eval_windows`] cuts them), every token after the first a target.
pub fn text_samples(tokens: &[u32], cutoff_len: usize) -> Vec<TrainSample> {
    eval_windows(tokens, cutoff_len)
        .into_iter()
        .map(|w| TrainSample { ids: w.to_vec(), targets: (0..w.len()).map(|t| t > 0).collect() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// One token per character, with a BOS of 1000 as a LLaMA tokenizer adds it.
    fn encode(s: &str) -> Result<Vec<u32>, ()> {
        Ok(std::iter::once(1000).chain(s.chars().map(|c| c as u32)).collect())
    }

    #[test]
    fn prompts_are_alpaca_loras() {
        let with = AlpacaExample { instruction: "Add.".into(), input: "2 and 3".into(), output: "5".into() };
        assert_eq!(
            with.prompt(true),
            "Below is an instruction that describes a task, paired with an input that provides further context. \
             Write a response that appropriately completes the request.\n\n### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:\n5"
        );
        let without = AlpacaExample { instruction: "Say hi.".into(), input: String::new(), output: "Hi".into() };
        assert_eq!(
            without.prompt(false),
            "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n\
             ### Instruction:\nSay hi.\n\n### Response:\n"
        );
    }

    #[test]
    fn reads_json_arrays_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let arr = write(dir.path(), "a.json", r#"[{"instruction": "i", "input": "x", "output": "o"}, {"instruction": "j", "output": "p"}]"#);
        let rows = read_alpaca(&arr).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1], AlpacaExample { instruction: "j".into(), input: String::new(), output: "p".into() });
        let lines = write(dir.path(), "a.jsonl", "{\"instruction\": \"i\", \"input\": null, \"output\": \"o\"}\n\n{\"instruction\": \"k\", \"input\": \"\", \"output\": \"q\"}\n");
        assert_eq!(read_alpaca(&lines).unwrap().len(), 2);
    }

    #[test]
    fn bad_rows_name_the_file_and_row() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("[{\"instruction\": \"i\", \"output\": \"o\"}, {\"instruction\": \"i\"}]", "element 1: no `output`"),
            ("{\"instruction\": \"i\", \"output\": \"o\"}\n{\"output\": \"o\"}\n", "line 2: no `instruction`"),
            ("{\"instruction\": \"i\", \"output\": 3}\n", "line 1: `output` is not a string"),
            ("{\"instruction\": \"i\", \"output\": \"o\"\n", "line 1"),
            ("[1]", "element 0: a row must be"),
            ("[{\"instruction\": \"i\"", "line 1"),
            ("\n", "no rows"),
        ];
        for (i, (text, needle)) in cases.iter().enumerate() {
            let path = write(dir.path(), &format!("bad{i}.json"), text);
            let msg = read_alpaca(&path).unwrap_err().to_string();
            assert!(msg.contains(&format!("bad{i}.json")) && msg.contains(needle), "case {i}: {msg}");
        }
        assert!(matches!(read_alpaca(&dir.path().join("none.json")), Err(FrontendError::Io { .. })));
    }

    #[test]
    fn prompt_tokens_are_masked_and_eos_appended_when_it_fits() {
        let ex = AlpacaExample { instruction: "i".into(), input: String::new(), output: "abc".into() };
        let prompt_len = encode(&ex.prompt(false)).unwrap().len();
        let s = alpaca_sample(&ex, encode, Some(2), 1000).unwrap();
        assert_eq!(s.ids.len(), prompt_len + 3 + 1);
        assert_eq!(s.ids[0], 1000);
        assert_eq!(*s.ids.last().unwrap(), 2);
        assert!(s.targets[..prompt_len].iter().all(|t| !t));
        assert!(s.targets[prompt_len..].iter().all(|&t| t));
        assert_eq!(s.predicted(), 4);
        // cut at cutoff_len: no EOS (it does not fit), the prompt masked up to the cut
        let cut = alpaca_sample(&ex, encode, Some(2), prompt_len + 2).unwrap();
        assert_eq!(cut.ids.len(), prompt_len + 2);
        assert_eq!(cut.ids[prompt_len..], ['a' as u32, 'b' as u32]);
        assert_eq!(cut.predicted(), 2);
        let all_prompt = alpaca_sample(&ex, encode, Some(2), 10).unwrap();
        assert_eq!((all_prompt.ids.len(), all_prompt.predicted()), (10, 0));
        // errors of the encoder pass through
        assert!(alpaca_sample(&ex, |_| Err::<Vec<u32>, _>("boom"), None, 8).is_err());
    }

    #[test]
    fn text_windows_predict_every_token_but_the_first() {
        let tokens: Vec<u32> = (0..10).collect();
        let s = text_samples(&tokens, 4);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].ids, [4, 5, 6, 7]);
        assert_eq!(s[1].targets, [false, true, true, true]);
        assert_eq!(s[0].predicted(), 3);
    }
}
