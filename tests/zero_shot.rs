//! Zero-shot tasks and the table of results: log-likelihoods checked against the model's own
//! forward pass, the harness's tokenization of a request, and the `eval` pass through the command
//! line on every dataset format (with its refusals).

mod common;

use common::{assert_clean_failure, byte_tokenizer, eval_fixture, fixture, prunec, texts};
use prunec_backends::runtime::{cpu, loglikelihoods, Cpu, Executor, TokenRequest};
use prunec_frontends::tasks::{encode_pair, encode_pair_with, Request, Task};
use prunec_frontends::tokenizer::{SpecialTokens, Tokenizer};

/// The log-likelihood of `continuation` after `context` computed alone: one forward pass of the
/// whole sequence (no batch, no padding), log-softmax in f64.
fn reference(exec: &Executor<Cpu>, context: &[u32], continuation: &[u32]) -> f64 {
    let whole: Vec<u32> = context.iter().chain(continuation).copied().collect();
    let logits: Vec<f32> = exec.forward(exec.ids(std::slice::from_ref(&whole)).unwrap()).unwrap().into_data().into_vec().unwrap();
    let vocab = logits.len() / whole.len();
    (0..continuation.len())
        .map(|j| {
            let pos = context.len() - 1 + j;
            let row: Vec<f64> = logits[pos * vocab..(pos + 1) * vocab].iter().map(|&x| f64::from(x)).collect();
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
            row[continuation[j] as usize] - lse
        })
        .sum()
}

#[test]
fn loglikelihoods_are_the_continuations_log_probabilities() {
    let model = prunec_frontends::load(&fixture("llama-mha")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tok = Tokenizer::from_file(&byte_tokenizer(dir.path())).unwrap();
    // every request of the first two PIQA and HellaSwag documents: lengths differ, so batches pad
    let mut requests = Vec::new();
    for (task, file) in [(Task::Piqa, "piqa/validation-00000-of-00001.parquet"), (Task::HellaSwag, "hellaswag/validation-00000-of-00001.parquet")] {
        for doc in task.load(&eval_fixture(file), Some(2)).unwrap() {
            for r in &doc.requests {
                let (context, continuation) = encode_pair(&tok, r, None).unwrap();
                requests.push(TokenRequest { context, continuation });
            }
        }
    }
    assert_eq!(requests.len(), 12);
    let mut calls = Vec::new();
    let got = loglikelihoods::<Cpu>(&model, &cpu(), &requests, 5, 2048, |done, total| calls.push((done, total))).unwrap();
    assert_eq!(calls, [(5, 12), (10, 12), (12, 12)]);
    let exec = Executor::<Cpu>::new(&model, &cpu()).unwrap();
    for (r, ll) in requests.iter().zip(&got) {
        let want = reference(&exec, &r.context, &r.continuation);
        assert!((ll - want).abs() < 1e-3 * want.abs().max(1.0), "{ll} vs {want}");
        assert!(*ll < 0.0);
    }
    // one batch or one per forward: the same numbers
    let single = loglikelihoods::<Cpu>(&model, &cpu(), &requests, 1, 2048, |_, _| {}).unwrap();
    for (a, b) in got.iter().zip(&single) {
        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
    }
    // a longer input than max_length loses its first tokens, as the harness truncates
    let r = &requests[0];
    let max_length = r.continuation.len() + 9;
    let cut = loglikelihoods::<Cpu>(&model, &cpu(), std::slice::from_ref(r), 1, max_length, |_, _| {}).unwrap()[0];
    let whole: Vec<u32> = r.context.iter().chain(&r.continuation).copied().collect();
    assert!(whole.len() > max_length + 1);
    let kept = &whole[whole.len() - (max_length + 1)..];
    let want = reference(&exec, &kept[..kept.len() - r.continuation.len()], &r.continuation);
    assert!((cut - want).abs() < 1e-3 * want.abs().max(1.0), "{cut} vs {want}");
    // an empty context is refused, not scored
    let empty = TokenRequest { context: vec![], continuation: vec![1] };
    assert!(loglikelihoods::<Cpu>(&model, &cpu(), &[empty], 1, 2048, |_, _| {}).is_err());
}

#[test]
fn requests_are_tokenized_as_the_harness_encodes_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let tok = Tokenizer::from_file(&byte_tokenizer(dir.path())).unwrap();
    let ids = |s: &str| tok.encode(s).unwrap();
    // trailing spaces of the context move onto the continuation
    let r = Request { context: "Answer: ".into(), continuation: "yes".into() };
    assert_eq!(encode_pair(&tok, &r, None).unwrap(), (ids("Answer:"), ids(" yes")));
    let r = Request { context: "Question: q\nAnswer:".into(), continuation: " no".into() };
    let (c, k) = encode_pair(&tok, &r, None).unwrap();
    assert_eq!((c.len(), k), (19, ids(" no")));
    // a context without tokens stands on the prefix token
    let r = Request { context: "  ".into(), continuation: "x".into() };
    assert_eq!(encode_pair(&tok, &r, Some(1)).unwrap(), (vec![1], ids("  x")));
    // special tokens (a BOS, as 0.4.13 lets a LLaMA tokenizer add it): before the whole and the
    // context alike, so the continuation's tokens are the same
    let bos = SpecialTokens { prefix: vec![33], suffix: vec![] };
    let r = Request { context: "Question: q\nAnswer:".into(), continuation: " no".into() };
    let (c, k) = encode_pair_with(&tok, &r, &bos, Some(33)).unwrap();
    assert_eq!((c[0], c.len(), k), (33, 20, ids(" no")));
    assert_eq!(&c[1..], &encode_pair(&tok, &r, Some(33)).unwrap().0[..]);
    // a text that starts with the BOS token's text gets no other (the harness's `has_bos_prefix`)
    let bang = Request { context: "B, said".into(), continuation: " he".into() };
    let b = tok.token_id("B").unwrap();
    let (c, _) = encode_pair_with(&tok, &bang, &SpecialTokens { prefix: vec![b], suffix: vec![] }, Some(b)).unwrap();
    assert_eq!(c, ids("B, said"));
    // an empty context: the prefix token, then the continuation without special tokens
    let r = Request { context: "".into(), continuation: "x".into() };
    assert_eq!(encode_pair_with(&tok, &r, &bos, Some(33)).unwrap(), (vec![33], ids("x")));
}

/// The task files of the fixtures, as `--tasks` takes them.
fn all_tasks() -> String {
    [
        ("boolq", "boolq/validation-00000-of-00001.parquet"),
        ("piqa", "piqa/validation-00000-of-00001.parquet"),
        ("hellaswag", "hellaswag/validation-00000-of-00001.parquet"),
        ("winogrande", "winogrande/winogrande_xl/validation-00000-of-00001.parquet"),
        ("arc_easy", "ai2_arc/ARC-Easy/test-00000-of-00001.parquet"),
        ("arc_challenge", "ai2_arc/ARC-Challenge/test-00000-of-00001.parquet"),
        ("openbookqa", "openbookqa/main/test-00000-of-00001.parquet"),
    ]
    .iter()
    .map(|(t, f)| format!("{t}={}", eval_fixture(f).display()))
    .collect::<Vec<_>>()
    .join(",")
}

#[test]
fn eval_pass_writes_the_papers_table() {
    let dir = tempfile::tempdir().unwrap();
    let tok = byte_tokenizer(dir.path());
    let report = dir.path().join("r.json");
    let wiki = eval_fixture("wikitext-2-raw-v1/test-00000-of-00001.parquet");
    let ptb = eval_fixture("ptb.test.txt");
    let tasks = all_tasks();
    let out = prunec(&[
        fixture("llama-gqa").to_str().unwrap(),
        "--tokenizer",
        tok.to_str().unwrap(),
        "--pass",
        "eval",
        "--eval-text",
        wiki.to_str().unwrap(),
        "--eval-text",
        ptb.to_str().unwrap(),
        "--seq-len",
        "32",
        "--tasks",
        &tasks,
        "--limit",
        "2",
        "--report",
        report.to_str().unwrap(),
    ]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("perplexity: ") && stdout.contains("[wikitext2]") && stdout.contains("[ptb]"), "{stdout}");
    assert!(stdout.contains("hellaswag: acc ") && stdout.contains("(2 documents)"), "{stdout}");
    // the table, in three forms, beside the report
    let md = std::fs::read_to_string(dir.path().join("r.table.md")).unwrap();
    assert!(md.starts_with("| Model | #Params | WikiText2↓ | PTB↓ | BoolQ | PIQA | HellaSwag | WinoGrande | ARC-e | ARC-c | OBQA | Average |"), "{md}");
    assert!(md.contains("| original | "), "{md}");
    assert!(!md.lines().nth(2).unwrap().contains('—'), "every column measured: {md}");
    let csv = std::fs::read_to_string(dir.path().join("r.table.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.lines().nth(1).unwrap().starts_with("original,"), "{csv}");
    let table: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.table.json")).unwrap()).unwrap();
    let row = &table["rows"][0];
    assert_eq!(row["average_over"], 7);
    for task in Task::ALL {
        let t = &row["tasks"][task.name()];
        assert_eq!(t["documents"], 2, "{task}");
        let v = t["value"].as_f64().unwrap();
        assert!([0.0, 0.5, 1.0].contains(&v), "{task}: {v}");
    }
    assert!(row["perplexity"]["wikitext2"].as_f64().unwrap() > 1.0);
    // the report holds the same table and every pass's measurements
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["table"], table);
    assert_eq!(json["passes"][0]["evaluation"]["tasks"].as_array().map(Vec::len), Some(7));
    assert_eq!(json["perplexity"]["before"], row["perplexity"]["wikitext2"]);
    assert!(std::fs::read_to_string(dir.path().join("r.md")).unwrap().contains("## Results"));

    // --tasks-dir finds the JSONL copies by name; they score as the Parquet files do
    let prefix = dir.path().join("t");
    let out = prunec(&[
        fixture("llama-gqa").to_str().unwrap(),
        "--tokenizer",
        tok.to_str().unwrap(),
        "--pass",
        "eval",
        "--tasks-dir",
        eval_fixture("jsonl").to_str().unwrap(),
        "--limit",
        "2",
        "--table",
        prefix.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", texts(&out).1);
    let again: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("t.json")).unwrap()).unwrap();
    assert_eq!(again["rows"][0]["tasks"], row["tasks"].clone());
    assert_eq!(again["rows"][0]["perplexity"]["wikitext2"], serde_json::Value::Null);
    assert!(std::fs::read_to_string(dir.path().join("t.md")).unwrap().contains("| — | — |"));
}

#[test]
fn bad_evaluation_inputs_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let tok = byte_tokenizer(dir.path());
    let model = fixture("llama-mha");
    let run = |extra: &[&str]| {
        let mut args = vec![model.to_str().unwrap(), "--tokenizer", tok.to_str().unwrap(), "--pass", "eval"];
        args.extend_from_slice(extra);
        prunec(&args)
    };
    assert_clean_failure(&run(&["--tasks", "mmlu=x.parquet"]), &["unknown task `mmlu`", "hellaswag"]);
    assert_clean_failure(&run(&["--tasks", "boolq"]), &["expected TASK=FILE"]);
    assert_clean_failure(&run(&["--tasks", "boolq=/nonexistent/boolq.parquet"]), &["/nonexistent/boolq.parquet"]);
    // a PIQA file given as BoolQ: the missing column and the file's columns are named
    let piqa = eval_fixture("piqa/validation-00000-of-00001.parquet");
    let spec = format!("boolq={}", piqa.display());
    assert_clean_failure(&run(&["--tasks", &spec]), &["validation-00000-of-00001.parquet", "no column `passage`", "goal, sol1, sol2, label"]);
    // a corrupt Parquet file
    let bad = dir.path().join("test-00000-of-00001.parquet");
    std::fs::write(&bad, b"PAR1 garbage").unwrap();
    assert_clean_failure(&run(&["--eval-text", bad.to_str().unwrap()]), &["test-00000-of-00001.parquet", "corrupt Parquet file"]);
    let spec = format!("piqa={}", bad.display());
    assert_clean_failure(&run(&["--tasks", &spec]), &["test-00000-of-00001.parquet", "Parquet"]);
    // a Parquet text without a text column, and a named column that is not there
    assert_clean_failure(&run(&["--eval-text", piqa.to_str().unwrap()]), &["no column `text` or `sentence`"]);
    let wiki = eval_fixture("wikitext-2-raw-v1/test-00000-of-00001.parquet");
    assert_clean_failure(&run(&["--eval-text", wiki.to_str().unwrap(), "--text-column", "body"]), &["no column `body`", "its columns: text"]);
    // a folder without task files
    assert_clean_failure(&run(&["--tasks-dir", dir.path().to_str().unwrap()]), &["no task files found"]);
    // nothing to evaluate
    assert_clean_failure(&run(&[]), &["pass `eval` needs --eval-text"]);
}
