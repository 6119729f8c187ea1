//! `group,score,prune` through the command line, and its refusals.

mod common;

use common::{assert_clean_failure, fixture, prunec, texts};


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
    ]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("pruned 25088 of 234048 parameters"), "{stdout}");
    assert!(stdout.contains("layer 1: attention 4→3, mlp 176→132"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["params"]["before"], 234048);
    assert_eq!(json["params"]["after"], 208960);
    let achieved = json["ratio"]["achieved"].as_f64().unwrap();
    assert!((achieved - 25088.0 / 234048.0).abs() < 1e-12);
    let names: Vec<&str> = json["passes"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["eval", "group", "score", "prune", "eval"]);
    let (before, after) = (json["perplexity"]["before"].as_f64().unwrap(), json["perplexity"]["after"].as_f64().unwrap());
    assert!((before / 7.0955033f64.exp() - 1.0).abs() < 1e-5);
    assert!(after.is_finite() && after != before);
}

#[test]
fn refusals() {
    let model = fixture("llama-mha");
    let m = model.to_str().unwrap();
    assert_clean_failure(&prunec(&[m, "--pass", "group,score,prune"]), &["needs --ratio"]);
    assert_clean_failure(&prunec(&[m, "--pass", "group,score,prune", "--ratio", "1.5"]), &["out of range"]);
    assert_clean_failure(
        &prunec(&[m, "--pass", "group,score,prune", "--ratio", "0.2", "--importance", "taylor-element1"]),
        &["needs calibration text", "--calib"],
    );
    assert_clean_failure(
        &prunec(&[m, "--pass", "group,score", "--importance", "fisher"]),
        &["unknown importance `fisher`", "taylor-element2"],
    );
    assert_clean_failure(&prunec(&[m, "--pass", "prune", "--ratio", "0.2"]), &["needs scores"]);
    let out = prunec(&[m, "--pass", "group,score,prune", "--ratio", "0.2", "--importance", "l2", "--attn-layers", "9..12", "--mlp-layers", "9..12"]);
    assert_clean_failure(&out, &["no group is eligible"]);
}
