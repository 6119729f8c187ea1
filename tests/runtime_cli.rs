//! The runtime through the command line: the `eval` pass and its report, `generate`, `bench`,
//! `--device`, and their refusals.

mod common;

use common::{assert_clean_failure, fixture, prunec, smollm2, texts};


#[test]
fn eval_pass_reports_perplexity_of_the_golden_rows() {
    let dir = tempfile::tempdir().unwrap();
    let ids = common::golden_ids_jsonl(dir.path());
    let report = dir.path().join("report.json");
    let model = fixture("llama-mha");
    let out = prunec(&[
        model.to_str().unwrap(),
        "--pass",
        "eval",
        "--eval-text",
        ids.to_str().unwrap(),
        "--seq-len",
        "12",
        "--report",
        report.to_str().unwrap(),
    ]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("perplexity: "), "{stdout}");
    // two windows of 12 are the two golden rows: perplexity = exp(golden loss)
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let ppl = json["perplexity"]["before"].as_f64().unwrap();
    let want = 7.0955033f64.exp();
    assert!((ppl / want - 1.0).abs() < 1e-5, "{ppl} vs {want}");
    assert!(json["perplexity"]["after"].is_null());
    assert_eq!(json["passes"][0]["name"], "eval");
    assert_eq!(json["passes"][0]["perplexity"].as_f64(), Some(ppl));
    assert_eq!(json["passes"][0]["eval"]["predicted_tokens"], 22);
    assert!(json["passes"][0]["seconds"].as_f64().is_some());
    assert_eq!(json["params"]["before"], 234048);
    assert_eq!(json["params"]["after"], 234048);
    assert!(stderr.contains("eval: 2/2"), "progress lines: {stderr}");
}

#[test]
fn eval_without_text_is_refused() {
    let out = prunec(&[fixture("llama-mha").to_str().unwrap(), "--pass", "eval"]);
    assert_clean_failure(&out, &["pass `eval` needs --eval-text"]);
}

#[test]
fn eval_text_missing_or_too_short() {
    let model = fixture("llama-mha");
    let out = prunec(&[model.to_str().unwrap(), "--pass", "eval", "--eval-text", "/nonexistent/wiki.txt"]);
    assert_clean_failure(&out, &["/nonexistent/wiki.txt"]);
    let dir = tempfile::tempdir().unwrap();
    let ids = common::golden_ids_jsonl(dir.path());
    let out = prunec(&[model.to_str().unwrap(), "--pass", "eval", "--eval-text", ids.to_str().unwrap()]);
    assert_clean_failure(&out, &["24 tokens, fewer than one window of 128"]);
}

#[test]
fn a_report_never_overwrites_the_input() {
    let dir = common::copy_fixture("llama-mha");
    let ids = common::golden_ids_jsonl(dir.path());
    let config = dir.path().join("config.json");
    let before = std::fs::read(&config).unwrap();
    let out = prunec(&[
        dir.path().to_str().unwrap(),
        "--pass",
        "eval",
        "--eval-text",
        ids.to_str().unwrap(),
        "--seq-len",
        "12",
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    assert_clean_failure(&out, &["refusing to overwrite an input"]);
    assert_eq!(std::fs::read(&config).unwrap(), before);
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let ids = common::golden_ids_jsonl(dir.path());
    let out = prunec(&[
        fixture("llama-mha").to_str().unwrap(),
        "--pass",
        "eval",
        "--eval-text",
        ids.to_str().unwrap(),
        "--seq-len",
        "12",
        "--device",
        "cuda",
    ]);
    assert_clean_failure(&out, &["--features cuda"]);
}

#[test]
fn bench_reports_throughput() {
    let out = prunec(&["bench", fixture("llama-gqa").to_str().unwrap(), "--seq-len", "16", "--iters", "1"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    for line in ["forward ", "forward+backward", "generation ", "MACs per token", "peak RSS"] {
        assert!(stdout.contains(line), "{stdout}");
    }
}

/// `bench` of an original and its pruned copy: the paper's statistics table (parameters, MACs,
/// throughput, memory) with ratios against the first.
#[test]
fn bench_compares_original_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let m = fixture("llama-gqa");
    let m = m.to_str().unwrap();
    let pruned = dir.path().join("pruned");
    let p = pruned.to_str().unwrap();
    let run = prunec(&[m, "--pass", "group,score,prune", "--ratio", "0.3", "--importance", "l2", "-o", p]);
    assert!(run.status.success(), "{}", texts(&run).1);
    let stem = dir.path().join("cost");
    let out = prunec(&["bench", m, p, "--seq-len", "16", "--iters", "1", "--new-tokens", "4", "--out", stem.to_str().unwrap()]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("| model | parameters | MACs/token |"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(stem.with_extension("json")).unwrap()).unwrap();
    let models = json["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    let (a, b) = (&models[0], &models[1]);
    assert!(b["parameters"].as_u64() < a["parameters"].as_u64());
    assert!(b["macs_per_token"].as_u64() < a["macs_per_token"].as_u64());
    for m in models {
        for key in ["forward_tokens_per_s", "backward_tokens_per_s", "generate_tokens_per_s"] {
            assert!(m[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {m}");
        }
    }
    assert_eq!(std::fs::read_to_string(stem.with_extension("csv")).unwrap().lines().count(), 3);
    // the table's ratio of the original to itself
    assert!(std::fs::read_to_string(stem.with_extension("md")).unwrap().contains("(1.000)"));
}

#[test]
fn smollm2_generates_paris_and_evaluates_golden_windows() {
    let Some(gguf) = smollm2() else { return };
    let out = prunec(&["generate", gguf.to_str().unwrap(), "--prompt", "The capital of France is", "--max-new-tokens", "3"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("The capital of France is Paris"), "{stdout}");

    // the first two 128-token windows of the golden text, as token rows
    let g = common::GoldenFile::read(&fixture("smollm2/golden.safetensors"));
    let ids = g.ints("public_txt.token_ids");
    let window_nll = g.floats("public_txt.window_mean_nll");
    let dir = tempfile::tempdir().unwrap();
    let rows: String = ids[..256].chunks(128).map(|w| format!("{{\"input_ids\": {w:?}}}\n")).collect();
    let path = dir.path().join("w.jsonl");
    std::fs::write(&path, rows).unwrap();
    let report = dir.path().join("r.json");
    let out = prunec(&[
        gguf.to_str().unwrap(),
        "--pass",
        "eval",
        "--eval-text",
        path.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", texts(&out).1);
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let want = ((f64::from(window_nll[0]) + f64::from(window_nll[1])) / 2.0).exp();
    let got = json["perplexity"]["before"].as_f64().unwrap();
    assert!((got / want - 1.0).abs() < 1e-4, "{got} vs {want}");
}

/// `generate --chat`: the prompt as a user's turn in the model's own chat template (SmolLM2's,
/// from its GGUF metadata) — the instruct model then answers and stops at its end of turn;
/// `--chat-template vicuna` for a model without one; without either, a clear refusal.
#[test]
fn smollm2_answers_in_its_chat_template() {
    let Some(gguf) = smollm2() else { return };
    let g = gguf.to_str().unwrap();
    let out = prunec(&["generate", g, "--prompt", "What is the capital of France?", "--chat", "--max-new-tokens", "12"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"), "{stdout}");
    let answer = stdout.rsplit("<|im_start|>assistant\n").next().unwrap_or_default();
    assert!(answer.contains("Paris"), "{stdout}");
    let out = prunec(&["generate", g, "--prompt", "Hello", "--chat", "--chat-template", "vicuna", "--max-new-tokens", "2"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(" USER: Hello ASSISTANT:"), "{stdout}");
    // a template file that is not there
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("tokenizer.json");
    let run = prunec(&["generate", g, "--prompt", "x", "--max-new-tokens", "1", "--chat", "--chat-template", tok.to_str().unwrap()]);
    assert!(!run.status.success());
    assert!(texts(&run).1.contains("--chat-template"), "{}", texts(&run).1);
}
