//! ChatGLM2-6B (`tests/fixtures/chatglm2-6b`, see the fixtures README §5): the `group` pass on
//! its fused query_key_value and dense_h_to_4h projections (its logits, loss and gradients are
//! checked with the other golden models in `tests/golden.rs`).

mod common;

use common::{fixture, prunec, texts};

const NAME: &str = "chatglm2-6b";

#[test]
fn chatglm2_group_pass() {
    let out = prunec(&[fixture(NAME).to_str().unwrap(), "--pass", "group"]);
    let (stdout, stderr) = texts(&out);
    println!("{stdout}\n{stderr}");
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let row = |kind: &str| -> Vec<String> {
        let line = stdout.lines().find(|l| l.trim_start().starts_with(kind)).unwrap_or_else(|| panic!("no `{kind}` row:\n{stdout}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    // 4 layers; each: 2 key/value groups of 2 query heads, 128 MLP channels
    assert_eq!(row("attention")[1..5], ["4", "2", "(each", "2"], "{stdout}");
    assert_eq!(row("mlp")[1..3], ["4", "128"], "{stdout}");
}

/// Pruned with `--uniform`, a ChatGLM2 model is written with ChatGLM's own names, layout and
/// config fields and reads back as the same model; layers of different widths are listed under
/// `prunec_layer_widths` and read back too.
#[test]
fn chatglm2_pruned_writes_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let calib = common::golden_ids_jsonl(dir.path());
    let c = calib.to_str().unwrap();
    let out = dir.path().join("pruned");
    let o = out.to_str().unwrap();
    let m = fixture(NAME);
    let m = m.to_str().unwrap();
    let perplexity = |stderr: &str| stderr.lines().rfind(|l| l.starts_with("perplexity:")).map(str::to_string);
    let run = prunec(&[m, "--pass", "group,score,prune,eval", "--ratio", "0.25", "--importance", "l2", "--uniform", "--eval-text", c, "--seq-len", "12", "-o", o]);
    let (_, stderr) = texts(&run);
    assert!(run.status.success(), "{stderr}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "chatglm");
    assert!(config["multi_query_group_num"].as_u64().unwrap() <= 2 && config["ffn_hidden_size"].as_u64().unwrap() < 128, "{config}");
    let back = prunec(&[o, "--pass", "eval", "--eval-text", c, "--seq-len", "12"]);
    assert!(back.status.success(), "{}", texts(&back).1);
    assert_eq!(perplexity(&texts(&back).1), perplexity(&stderr));
    // pruned globally, the layers differ: listed under prunec_layer_widths and read back
    let global = dir.path().join("global");
    let g = global.to_str().unwrap();
    let run = prunec(&[m, "--pass", "group,score,prune,eval", "--ratio", "0.25", "--importance", "l2", "--global", "--eval-text", c, "--seq-len", "12", "-o", g]);
    let (_, stderr) = texts(&run);
    assert!(run.status.success(), "{stderr}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(global.join("config.json")).unwrap()).unwrap();
    let widths = config["prunec_layer_widths"].as_array().unwrap_or_else(|| panic!("no per-layer widths: {config}"));
    assert_eq!(widths.len(), 4);
    assert!(widths.windows(2).any(|w| w[0] != w[1]), "{config}");
    let back = prunec(&[g, "--pass", "eval", "--eval-text", c, "--seq-len", "12"]);
    assert!(back.status.success(), "{}", texts(&back).1);
    assert_eq!(perplexity(&texts(&back).1), perplexity(&stderr));
}

const V1: &str = "chatglm-6b";

#[test]
fn chatglm6b_group_pass() {
    let out = prunec(&[fixture(V1).to_str().unwrap(), "--pass", "group"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // 4 layers; each: 4 heads of 48 fused rows + 16 dense columns (4144 params), 128 MLP channels
    let attention = stdout.lines().find(|l| l.trim_start().starts_with("attention")).unwrap_or_default();
    assert_eq!(attention.split_whitespace().collect::<Vec<_>>(), ["attention", "4", "4", "4144"], "{stdout}");
    let mlp = stdout.lines().find(|l| l.trim_start().starts_with("mlp")).unwrap_or_default();
    assert_eq!(mlp.split_whitespace().collect::<Vec<_>>(), ["mlp", "4", "128", "129"], "{stdout}");
}

/// ChatGLM-6B pruned with `--uniform`: written with its own names and config fields, read back
/// as the same model. Pruned heads keep their width, which ChatGLM-6B's own code derives from
/// `hidden_size / num_attention_heads`, so prunec records it (`prunec_head_dim`); an MLP-only
/// result needs no such key.
#[test]
fn chatglm6b_pruned_writes_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let calib = common::golden_ids_jsonl_of(V1, dir.path());
    let c = calib.to_str().unwrap();
    let m = fixture(V1);
    let m = m.to_str().unwrap();
    let perplexity = |stderr: &str| stderr.lines().rfind(|l| l.starts_with("perplexity:")).map(str::to_string);
    // unit ratio 0.25: 1 of 4 heads, 32 of 128 channels; ratio 0.02 of the parameters: no
    // whole head, a few MLP channels
    for (what, amount, heads, mlp) in [("heads", ["--unit-ratio", "0.25"], 3, 96), ("mlp", ["--ratio", "0.02"], 4, 122)] {
        let out = dir.path().join(what);
        let o = out.to_str().unwrap();
        let mut args = vec![m, "--pass", "group,score,prune,eval", "--importance", "taylor-element1", "--calib", c];
        args.extend_from_slice(&amount);
        args.extend_from_slice(&["--uniform", "--eval-text", c, "--seq-len", "12", "-o", o]);
        let run = prunec(&args);
        let (_, stderr) = texts(&run);
        assert!(run.status.success(), "{stderr}");
        let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
        assert_eq!((config["model_type"].as_str(), config["num_attention_heads"].as_u64()), (Some("chatglm"), Some(heads)), "{config}");
        assert_eq!(config["inner_hidden_size"], mlp, "{config}");
        assert_eq!(config["hidden_size"], 64, "{config}");
        assert_eq!(config.get("prunec_head_dim").and_then(serde_json::Value::as_u64), (heads == 3).then_some(16), "{config}");
        assert_eq!(config["gmask_token_id"], 251);
        assert!(config.get("prunec_layer_widths").is_none(), "{config}");
        let back = prunec(&[o, "--pass", "eval", "--eval-text", c, "--seq-len", "12"]);
        assert!(back.status.success(), "{}", texts(&back).1);
        assert_eq!(perplexity(&texts(&back).1), perplexity(&stderr));
    }
}

/// ChatGLM-6B pruned globally: layers of different widths, listed under `prunec_layer_widths`,
/// read back as the same model.
#[test]
fn chatglm6b_layers_of_different_widths_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let calib = common::golden_ids_jsonl_of(V1, dir.path());
    let c = calib.to_str().unwrap();
    let out = dir.path().join("global");
    let o = out.to_str().unwrap();
    let m = fixture(V1);
    let perplexity = |stderr: &str| stderr.lines().rfind(|l| l.starts_with("perplexity:")).map(str::to_string);
    let run = prunec(&[m.to_str().unwrap(), "--pass", "group,score,prune,eval", "--ratio", "0.3", "--importance", "l1", "--global", "--eval-text", c, "--seq-len", "12", "-o", o]);
    let (_, stderr) = texts(&run);
    assert!(run.status.success(), "{stderr}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let widths = config["prunec_layer_widths"].as_array().unwrap_or_else(|| panic!("no per-layer widths: {config}"));
    assert_eq!(widths.len(), 4);
    assert!(widths.windows(2).any(|w| w[0] != w[1]), "{config}");
    let back = prunec(&[o, "--pass", "eval", "--eval-text", c, "--seq-len", "12"]);
    assert!(back.status.success(), "{}", texts(&back).1);
    assert_eq!(perplexity(&texts(&back).1), perplexity(&stderr));
}
