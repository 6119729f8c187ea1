//! `reconstruct` and the allocations of `prune` through the command line: the laws of
//! reconstruction (it never raises an op's error on its calibration windows; with nothing
//! pruned it changes no weight), the written folder with its biases reloading with the same
//! perplexity, and FLAP's allocation.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_clean_failure, fixture, prunec, texts};

/// `rows` deterministic rows of `len` token ids below 256 (the fixtures' vocabulary) as JSONL
/// `input_ids`: calibration and evaluation windows alike.
fn ids(dir: &Path, rows: usize, len: usize) -> PathBuf {
    let path = dir.join("ids.jsonl");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut text = String::new();
    for _ in 0..rows {
        let row: Vec<u64> = (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 33) % 256
            })
            .collect();
        text.push_str(&format!("{{\"input_ids\": {row:?}}}\n"));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The perplexities the `eval` passes of a run's report measured, in order.
fn perplexities(report: &serde_json::Value) -> Vec<f64> {
    report["passes"].as_array().unwrap().iter().filter_map(|p| p["perplexity"].as_f64()).collect()
}

#[test]
fn reconstruction_never_raises_an_ops_error_and_its_folder_reloads_with_the_same_perplexity() {
    let dir = tempfile::tempdir().unwrap();
    let data = ids(dir.path(), 16, 24);
    let d = data.to_str().unwrap();
    for how in ["ls", "bias"] {
        let out = dir.path().join(format!("out-{how}"));
        let report = dir.path().join(format!("r-{how}.json"));
        // the calibration windows of reconstruct are the evaluation windows
        let run = prunec(&[
            fixture("llama-gqa").to_str().unwrap(),
            "--pass",
            "group,score,prune,eval,reconstruct,eval",
            "--ratio",
            "0.3",
            "--importance",
            "l2",
            "--reconstruct",
            how,
            "--calib",
            d,
            "--reconstruct-samples",
            "16",
            "--reconstruct-len",
            "24",
            "--eval-text",
            d,
            "--seq-len",
            "24",
            "-o",
            out.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ]);
        let (stdout, stderr) = texts(&run);
        assert!(run.status.success(), "{how}: {stderr}");
        assert!(stdout.contains("ops reconstructed"), "{stdout}");
        let r = json(&report);
        let rec = &r["reconstruction"];
        assert_eq!(rec["method"], how);
        let ops = rec["ops"].as_array().unwrap();
        // the ops that lost inputs: o_proj and down_proj of the layers the allocation pruned
        let named = |what: &str| ops.iter().filter(|o| o["op"].as_str().unwrap().ends_with(what)).count();
        assert!(named(".self_attn.o_proj") >= 1 && named(".mlp.down_proj") >= 1, "{ops:?}");
        assert_eq!(ops.len(), named(".self_attn.o_proj") + named(".mlp.down_proj"), "{ops:?}");
        for op in ops {
            let (before, after) = (op["error_before"].as_f64().unwrap(), op["error_after"].as_f64().unwrap());
            assert!(before > 0.0 && after.is_finite(), "{op}");
            assert!(after <= before * (1.0 + 1e-9), "{how}: {} error rose from {before} to {after}", op["op"]);
            assert!(op["kept"].as_u64() < op["inputs"].as_u64());
        }
        if how == "ls" {
            let (before, after) = (rec["error_before"].as_f64().unwrap(), rec["error_after"].as_f64().unwrap());
            assert!(after < 0.75 * before, "least squares on the evaluation windows: summed error {before} -> {after}");
        }
        let ppl = perplexities(&r);
        assert_eq!(ppl.len(), 2);
        // the written folder: o_proj/down_proj biases, and the zero biases a LLaMA config implies
        let config = json(&out.join("config.json"));
        assert_eq!(config["attention_bias"], true, "{config}");
        assert_eq!(config["mlp_bias"], true, "{config}");
        assert!(stderr.contains("zero biases added"), "{stderr}");
        let reread = dir.path().join(format!("again-{how}.json"));
        let again = prunec(&[out.to_str().unwrap(), "--pass", "eval", "--eval-text", d, "--seq-len", "24", "--report", reread.to_str().unwrap()]);
        assert!(again.status.success(), "{}", texts(&again).1);
        let reloaded = perplexities(&json(&reread))[0];
        assert!((reloaded / ppl[1] - 1.0).abs() < 1e-5, "{how}: reconstructed {} but reloaded {reloaded}", ppl[1]);
    }
}

#[test]
fn with_nothing_pruned_reconstruct_changes_no_weight() {
    let dir = tempfile::tempdir().unwrap();
    let data = ids(dir.path(), 4, 24);
    let d = data.to_str().unwrap();
    let write = |passes: &str, name: &str| {
        let out = dir.path().join(name);
        let run = prunec(&[
            fixture("llama-gqa").to_str().unwrap(),
            "--pass",
            passes,
            "--ratio",
            "0",
            "--importance",
            "l2",
            "--calib",
            d,
            "--reconstruct-len",
            "24",
            "-o",
            out.to_str().unwrap(),
        ]);
        let (stdout, stderr) = texts(&run);
        assert!(run.status.success(), "{stderr}");
        (out, stdout)
    };
    let (plain, _) = write("group,score,prune", "plain");
    let (rebuilt, stdout) = write("group,score,prune,reconstruct", "rebuilt");
    assert!(stdout.contains("nothing to reconstruct"), "{stdout}");
    for file in ["model.safetensors", "config.json"] {
        assert_eq!(std::fs::read(plain.join(file)).unwrap(), std::fs::read(rebuilt.join(file)).unwrap(), "{file} differs");
    }
}

#[test]
fn flap_allocation_gives_layers_their_own_widths_near_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let data = ids(dir.path(), 8, 24);
    let d = data.to_str().unwrap();
    let report = dir.path().join("r.json");
    let model = fixture("llama-mha");
    let flap = |extra: &[&str]| {
        let mut args = vec![model.to_str().unwrap(), "--pass", "group,score,prune", "--ratio", "0.3", "--importance", "l2", "--allocate", "flap"];
        args.extend_from_slice(extra);
        prunec(&args)
    };
    let run = flap(&["--calib", d, "--reconstruct-len", "24", "--report", report.to_str().unwrap()]);
    let (_, stderr) = texts(&run);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("--allocate flap: activations of 8 linear inputs"), "{stderr}");
    let r = json(&report);
    let removed = r["ratio"]["achieved"].as_f64().unwrap();
    assert!((removed - 0.3).abs() < 0.02, "removed {removed}");
    let widths = r["widths"].as_array().unwrap();
    let mlp: std::collections::BTreeSet<u64> =
        widths.iter().filter(|w| w["kind"] == "mlp").map(|w| w["units_after"].as_u64().unwrap()).collect();
    assert!(mlp.len() > 1, "flap chose one MLP width for every layer: {widths:?}");
    assert!(widths.iter().all(|w| w["units_after"].as_u64().unwrap() >= 1));

    // uniform widths cannot be adaptive
    let refused = flap(&["--uniform"]);
    common::assert_usage_error(&refused, &["--uniform", "--allocate"]);
    // reconstruct needs prune before it
    let alone = prunec(&[fixture("llama-mha").to_str().unwrap(), "--pass", "group,reconstruct"]);
    assert_clean_failure(&alone, &["put `prune` before it"]);
}

#[test]
fn a_sweep_row_is_the_run_with_the_same_allocation_and_reconstruction() {
    let dir = tempfile::tempdir().unwrap();
    let data = ids(dir.path(), 8, 24);
    let d = data.to_str().unwrap();
    let m = fixture("llama-gqa");
    let m = m.to_str().unwrap();
    let common_args = ["--importance", "l2", "--calib", d, "--reconstruct-len", "24", "--eval-text", d, "--seq-len", "24"];
    let stem = dir.path().join("sweep");
    let mut args = vec!["sweep", m, "--ratios", "0.3", "--allocations", "uniform,sensitivity", "--reconstructions", "none,ls", "--out", stem.to_str().unwrap()];
    args.extend_from_slice(&common_args);
    let sweep = prunec(&args);
    assert!(sweep.status.success(), "{}", texts(&sweep).1);
    let table = json(&stem.with_extension("json"));
    let points = table["points"].as_array().unwrap();
    let methods: Vec<&str> = points.iter().map(|p| p["method"].as_str().unwrap()).collect();
    assert_eq!(
        methods,
        [
            "l2, uniform allocation, no reconstruction",
            "l2, uniform allocation, ls",
            "l2, sensitivity allocation, no reconstruction",
            "l2, sensitivity allocation, ls"
        ]
    );
    let report = dir.path().join("r.json");
    let mut args = vec![m, "--pass", "group,score,prune,reconstruct,eval", "--ratio", "0.3", "--allocate", "uniform", "--report", report.to_str().unwrap()];
    args.extend_from_slice(&common_args);
    let run = prunec(&args);
    assert!(run.status.success(), "{}", texts(&run).1);
    let (row, ran) = (points[1]["perplexity"].as_f64().unwrap(), perplexities(&json(&report))[0]);
    assert!((row / ran - 1.0).abs() < 1e-9, "sweep row {row}, run {ran}");
}
