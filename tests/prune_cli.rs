//! `group,score,prune` through the command line, and its refusals.

mod common;

use common::{assert_clean_failure, assert_usage_error, fixture, prunec, texts};


#[test]
fn llm_pruner_recipe_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let calib = common::golden_ids_jsonl(dir.path());
    let report = dir.path().join("r.json");
    let model = fixture("llama-mha");
    let out = prunec(&[
        model.to_str().unwrap(),
        "--pass",
        "eval,group,score,prune,eval",
        "--unit-ratio",
        "0.25",
        "--importance",
        "taylor-element1",
        "--calib",
        calib.to_str().unwrap(),
        "--calib-len",
        "12",
        "--attn-layers",
        "1..3",
        "--mlp-layers",
        "1..3",
        "--eval-text",
        calib.to_str().unwrap(),
        "--seq-len",
        "12",
        "--report",
        report.to_str().unwrap(),
        "--scores-out",
        dir.path().join("scores.json").to_str().unwrap(),
    ]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("pruned 25088 of 234048 parameters"), "{stdout}");
    // the scores file holds LLM-Pruner's per-head importances (fixtures README §6.3)
    let scores: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("scores.json")).unwrap()).unwrap();
    assert_eq!(scores["importance"], "taylor-element1");
    let head = |layer: u64, unit: u64| {
        scores["units"].as_array().unwrap().iter().find(|r| r["layer"] == layer && r["kind"] == "attention" && r["unit"] == unit).unwrap()["score"].as_f64().unwrap()
    };
    assert!((head(1, 1) / 8.44541 - 1.0).abs() < 1e-4, "{}", head(1, 1));
    assert!((head(2, 3) / 4.57320 - 1.0).abs() < 1e-4, "{}", head(2, 3));
    assert!(stdout.contains("layer 1: attention 4→3, mlp 176→132"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["calibration"]["samples"], 2);
    assert!(json["passes"].as_array().unwrap().iter().all(|p| p["peak_rss_mib"].as_f64().is_some_and(|r| r > 0.0)));
    // linear MACs per token: 4 layers × (4·64·64 + 3·176·64) + 256·64 before; 25088 fewer after
    assert_eq!(json["macs_per_token"]["before"], 4 * (4 * 64 * 64 + 3 * 176 * 64) + 256 * 64);
    assert_eq!(json["macs_per_token"]["after"], 4 * (4 * 64 * 64 + 3 * 176 * 64) + 256 * 64 - 25088);
    // the groups prune takes (attention and mlp of layers 1 and 2) are the ones scored
    assert_eq!(json["importance"].as_array().unwrap().len(), 4);
    let widths = json["widths"].as_array().unwrap();
    assert_eq!(widths.len(), 4, "attention and mlp of layers 1 and 2");
    assert!(widths.iter().any(|w| w["layer"] == 1 && w["kind"] == "mlp" && w["units_before"] == 176 && w["units_after"] == 132));
    assert_eq!(json["params"]["before"], 234048);
    assert_eq!(json["params"]["after"], 208960);
    let md = std::fs::read_to_string(report.with_extension("md")).unwrap();
    assert!(md.contains("| parameters after | 208960 |") && md.contains("layer 1: attention 4→3"), "{md}");
    let achieved = json["ratio"]["achieved"].as_f64().unwrap();
    assert!((achieved - 25088.0 / 234048.0).abs() < 1e-12);
    let names: Vec<&str> = json["passes"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["eval", "group", "score", "prune", "eval"]);
    let (before, after) = (json["perplexity"]["before"].as_f64().unwrap(), json["perplexity"]["after"].as_f64().unwrap());
    assert!((before / 7.0955033f64.exp() - 1.0).abs() < 1e-5);
    assert!(after.is_finite() && after != before);
}

/// Scores of a `--scores-out` file, by (layer, kind, unit).
fn scores_file(path: &std::path::Path) -> std::collections::BTreeMap<String, f64> {
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let units = doc["units"].as_array().unwrap().iter();
    units.map(|u| (format!("{} {} {}", u["layer"], u["kind"], u["unit"]), u["score"].as_f64().unwrap())).collect()
}

/// With `prune` following, only the groups it prunes are scored, and calibration takes the
/// gradients of their parameters only (none of the embedding, the head, or the layers outside
/// --attn-layers/--mlp-layers): their scores are those of a calibration of every parameter,
/// bit for bit.
#[test]
fn calibration_of_the_pruned_layers_only_scores_as_a_full_one() {
    let dir = tempfile::tempdir().unwrap();
    let calib = common::golden_ids_jsonl(dir.path());
    for model in ["llama-mha", "llama-gqa", "chatglm2-6b"] {
        let path = fixture(model);
        let run = |passes: &str, scores: &str| {
            let scores = dir.path().join(format!("{model}-{scores}"));
            let mut args = vec![path.to_str().unwrap(), "--pass", passes, "--importance", "taylor-element1", "--calib"];
            args.extend([calib.to_str().unwrap(), "--calib-len", "12", "--attn-layers", "1..2", "--mlp-layers", "2..3"]);
            args.extend(["--unit-ratio", "0.25", "--scores-out", scores.to_str().unwrap(), "-o"]);
            let out_dir = dir.path().join(format!("{model}-{passes}"));
            args.push(out_dir.to_str().unwrap());
            let out = prunec(&args);
            assert!(out.status.success(), "{model} {passes}: {}", texts(&out).1);
            scores_file(&scores)
        };
        let all = run("group,score", "all.json");
        let scoped = run("group,score,prune", "scoped.json");
        let kinds: Vec<&str> = scoped.keys().map(|k| k.split_once(' ').unwrap().1).collect();
        assert!(!scoped.is_empty() && scoped.len() < all.len(), "{model}: {} of {} units", scoped.len(), all.len());
        assert!(kinds.iter().all(|k| k.starts_with("\"attention\"") || k.starts_with("\"mlp\"")), "{model}: {kinds:?}");
        assert!(scoped.keys().all(|k| k.starts_with("1 \"attention\"") || k.starts_with("2 \"mlp\"")), "{model}: {:?}", scoped.keys());
        for (unit, score) in &scoped {
            assert_eq!(score.to_bits(), all[unit].to_bits(), "{model} {unit}: {score} and {}", all[unit]);
        }
    }
}

#[test]
fn refusals() {
    let model = fixture("llama-mha");
    let m = model.to_str().unwrap();
    assert_clean_failure(&prunec(&[m, "--pass", "group,score,prune"]), &["needs --ratio"]);
    assert_clean_failure(&prunec(&[m, "--pass", "group,score,prune", "--ratio", "1.5"]), &["out of range"]);
    // without --calib the embedded text is used, which needs a tokenizer the tiny fixture lacks
    assert_clean_failure(
        &prunec(&[m, "--pass", "group,score,prune", "--ratio", "0.2", "--importance", "taylor-element1"]),
        &["no tokenizer", "--tokenizer"],
    );
    // a value clap parses is a usage error (exit 2), as for every option it checks
    assert_usage_error(&prunec(&[m, "--pass", "group,score", "--importance", "fisher"]), &["unknown importance `fisher`", "taylor-element2"]);
    assert_clean_failure(
        &prunec(&[m, "--pass", "group,score", "--importance", "l1,l2"]),
        &["--importance l1,l2", "one", "sweep"],
    );
    assert_clean_failure(&prunec(&[m, "--pass", "prune", "--ratio", "0.2"]), &["needs scores"]);
    let out = prunec(&[m, "--pass", "group,score,prune", "--ratio", "0.2", "--importance", "l2", "--attn-layers", "9..12", "--mlp-layers", "9..12"]);
    assert_clean_failure(&out, &["no group is eligible"]);
    let out = prunec(&[m, "--pass", "group,score,prune", "--ratio", "0.2", "--importance", "l2", "--uniform", "--global"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses --uniform with --global");
}

#[test]
fn pruned_model_is_written_as_an_hf_folder_that_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pruned");
    let model = fixture("llama-gqa");
    let run = |extra: &[&str]| {
        let mut args = vec![model.to_str().unwrap(), "--pass", "group,score,prune", "--unit-ratio", "0.5", "--importance", "l2", "-o", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        prunec(&args)
    };
    let first = run(&["--uniform"]);
    assert!(first.status.success(), "{}", texts(&first).1);
    let reread = prunec_frontends::load(&out).unwrap();
    assert_eq!(reread.params.get("model.layers.0.self_attn.k_proj.weight").unwrap().shape, [8, 64]);
    assert_eq!(reread.params.get("model.layers.0.mlp.gate_proj.weight").unwrap().shape, [88, 64]);
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!((config["num_key_value_heads"].as_u64(), config["intermediate_size"].as_u64()), (Some(1), Some(88)));
    assert!(config.get("prunec_layer_widths").is_none(), "--uniform gives a stock config");
    // an existing output is refused before any work, and kept
    assert_clean_failure(&run(&[]), &["already exists", "--force"]);
    assert!(out.join("model.safetensors").is_file());
    assert!(run(&["--force"]).status.success());
    // never over the input
    let out = prunec(&[model.to_str().unwrap(), "--pass", "group", "-o", model.to_str().unwrap(), "--force"]);
    assert_clean_failure(&out, &["refusing to overwrite an input"]);
}

/// The bare command works out of the box on a real model: Taylor importance calibrates on the
/// embedded text, and the report says so.
#[test]
fn smollm2_prunes_out_of_the_box() {
    let Some(gguf) = common::smollm2() else { return };
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let out = prunec(&[gguf.to_str().unwrap(), "--pass", "group,score,prune", "--ratio", "0.2", "--report", report.to_str().unwrap()]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the embedded calibration text"), "{stderr}");
    assert!(stdout.contains("pruned 26902656 of 134515008 parameters"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["calibration"]["text"], "embedded");
    assert_eq!(json["calibration"]["samples"], 10);
    let achieved = json["ratio"]["achieved"].as_f64().unwrap();
    assert!((achieved - 0.2).abs() < 0.01, "{achieved}");
}

#[test]
fn iterative_steps_regroup_and_rescore() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let model = fixture("llama-mha");
    let out = prunec(&[
        model.to_str().unwrap(),
        "--pass",
        "group,score,prune",
        "--ratio",
        "0.3",
        "--prune-steps",
        "3",
        "--importance",
        "l2",
        "--report",
        report.to_str().unwrap(),
    ]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    for k in 1..=3 {
        assert!(stdout.contains(&format!("step {k}/3: pruned")), "{stdout}");
    }
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let achieved = json["ratio"]["achieved"].as_f64().unwrap();
    assert!((achieved - 0.3).abs() < 0.03, "{achieved}");
    assert_clean_failure(
        &prunec(&[model.to_str().unwrap(), "--pass", "group,score,prune", "--unit-ratio", "0.3", "--prune-steps", "2", "--importance", "l2"]),
        &["iterative pruning needs --ratio"],
    );
    assert_clean_failure(
        &prunec(&[model.to_str().unwrap(), "--pass", "group,score,prune", "--ratio", "0.3", "--steps", "2", "--importance", "l2"]),
        &["--steps counts the training steps of `recover`", "--prune-steps"],
    );
}

/// `--round-to` keeps widths in multiples; `--uniform --mode channel` keeps the hidden width
/// a multiple of the query heads, as transformers 5 requires of a stock config.
#[test]
fn widths_are_rounded() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("llama-gqa"); // hidden 64, 8 query heads, MLP 176
    let run = |name: &str, extra: &[&str]| -> serde_json::Value {
        let out_dir = dir.path().join(name);
        let mut args = vec![model.to_str().unwrap(), "--pass", "group,score,prune", "--importance", "l2", "-o", out_dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = prunec(&args);
        assert!(out.status.success(), "{}", texts(&out).1);
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("config.json")).unwrap()).unwrap()
    };
    // 176 − int(176·0.7) = 53 channels asked: 123 left, rounded up to 128
    let c = run("mlp", &["--unit-ratio", "0.3", "--round-to", "16"]);
    assert_eq!(c["intermediate_size"], 128, "{c}");
    // 64 − int(64·0.85) = 10 hidden channels asked: 54 left, which --uniform rounds up to 56,
    // a multiple of the 8 heads
    let c = run("hidden", &["--unit-ratio", "0.15", "--mode", "channel", "--uniform"]);
    assert_eq!(c["hidden_size"], 56, "{c}");
    let c = run("hidden-free", &["--unit-ratio", "0.15", "--mode", "channel"]);
    assert_eq!(c["hidden_size"], 54, "{c}");
    let out = prunec(&[model.to_str().unwrap(), "--pass", "group", "--round-to", "0"]);
    assert!(!out.status.success() && texts(&out).1.contains("--round-to"), "{}", texts(&out).1);
}
