//! The studies: `prunec sweep` (perplexity against ratio per estimator and aggregation, with
//! the no-dependency ablation) and `prunec sensitivity` (one layer pruned at a time), their
//! tables and charts; and the ablation itself (each weight pruned on its own).

mod common;

use common::{assert_clean_failure, assert_usage_error, fixture, golden_ids_jsonl_of, prunec, texts};
use prunec_passes::prune::{select, Allocate, Amount, Gqa, Mode, PruneOptions};
use prunec_passes::{score, Aggregation, Importance};

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// A PNG's width and height, from its IHDR chunk.
fn png_size(path: &std::path::Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    let be = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20))
}

#[test]
fn sweep_writes_tables_and_charts() {
    let dir = tempfile::tempdir().unwrap();
    let ids = golden_ids_jsonl_of("llama-gqa", dir.path());
    let ids = ids.to_str().unwrap();
    let stem = dir.path().join("sweep");
    let m = fixture("llama-gqa");
    let run = prunec(&[
        "sweep", m.to_str().unwrap(), "--eval-text", ids, "--calib", ids, "--seq-len", "12",
        "--importance", "l2,taylor-element1", "--aggregation", "sum,max", "--ratios", "0.1,0.3", "--no-dependency",
        "--out", stem.to_str().unwrap(),
    ]);
    let (stdout, stderr) = texts(&run);
    assert!(run.status.success(), "{stderr}");
    // 2 estimators × 2 aggregations × (grouped, w/o dependency) × 2 ratios, with progress lines
    assert!(stderr.contains("[16/16] taylor-element1 (max) w/o dependency at 0.3"), "{stderr}");
    let json = read_json(&stem.with_extension("json"));
    let points = json["points"].as_array().unwrap();
    assert_eq!(points.len(), 16);
    let base = json["unpruned_perplexity"].as_f64().unwrap();
    assert!(base.is_finite() && base > 1.0);
    for pair in points.chunks(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!((a["x"].as_f64(), b["x"].as_f64()), (Some(0.1), Some(0.3)));
        assert!(b["parameters"].as_u64() < a["parameters"].as_u64(), "a larger ratio keeps fewer parameters");
        assert!(a["perplexity"].as_f64().unwrap().is_finite());
    }
    // the ablation is counted as the grouped pruning it stands beside
    for k in (0..16).step_by(4) {
        assert_eq!(points[k]["dependency"], true);
        assert_eq!(points[k + 2]["dependency"], false);
        assert_eq!(points[k]["parameters"], points[k + 2]["parameters"]);
        assert_ne!(points[k]["perplexity"], points[k + 2]["perplexity"], "independent pruning is another model");
    }
    let csv = std::fs::read_to_string(stem.with_extension("csv")).unwrap();
    assert_eq!(csv.lines().count(), 17);
    assert_eq!(csv.lines().next(), Some("method,importance,aggregation,dependency,ratio,parameters,perplexity,seconds"));
    let md = std::fs::read_to_string(stem.with_extension("md")).unwrap();
    assert!(md.contains("| method | 0.1 | 0.3 |") && md.contains("| l2 (max) w/o dependency |"), "{md}");
    assert_eq!(stdout, md);
    let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
    for label in ["l2 (sum)", "taylor-element1 (max) w/o dependency", "unpruned", "pruning ratio (share of parameters)"] {
        assert!(svg.contains(label), "the chart lacks `{label}`");
    }
    assert_eq!(png_size(&stem.with_extension("png")), (960, 600));
}

#[test]
fn sensitivity_prunes_one_layer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let ids = golden_ids_jsonl_of("llama-mha", dir.path());
    let ids = ids.to_str().unwrap();
    let stem = dir.path().join("sens");
    let m = fixture("llama-mha");
    let run = prunec(&["sensitivity", m.to_str().unwrap(), "--eval-text", ids, "--importance", "l1", "--unit-ratio", "0.5", "--seq-len", "12", "--out", stem.to_str().unwrap()]);
    let (_, stderr) = texts(&run);
    assert!(run.status.success(), "{stderr}");
    let json = read_json(&stem.with_extension("json"));
    let total = json["parameters"].as_u64().unwrap();
    let points = json["points"].as_array().unwrap();
    assert_eq!(points.iter().map(|p| p["x"].as_f64().unwrap()).collect::<Vec<_>>(), [0.0, 1.0, 2.0, 3.0]);
    // the layers are alike: each loses as many parameters, and no two give the same model
    let kept: std::collections::BTreeSet<u64> = points.iter().map(|p| p["parameters"].as_u64().unwrap()).collect();
    assert_eq!(kept.len(), 1);
    assert!(kept.iter().all(|&k| k < total));
    let ppl: std::collections::BTreeSet<u64> = points.iter().map(|p| p["perplexity"].as_f64().unwrap().to_bits()).collect();
    assert_eq!(ppl.len(), 4);
    assert_eq!(png_size(&stem.with_extension("png")), (960, 600));
    assert!(std::fs::read_to_string(stem.with_extension("md")).unwrap().contains("| 3 | "));
}

#[test]
fn studies_refuse_bad_requests() {
    let m = fixture("llama-gqa");
    let m = m.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ids = golden_ids_jsonl_of("llama-gqa", dir.path());
    let ids = ids.to_str().unwrap();
    let out = dir.path().join("x");
    let o = out.to_str().unwrap();
    assert_clean_failure(&prunec(&["sweep", m, "--eval-text", ids, "--ratios", "0.2,1.5", "--importance", "l2", "--out", o]), &["--ratios", "[0, 1)"]);
    assert_clean_failure(&prunec(&["sweep", m, "--importance", "l2", "--out", o]), &["--eval-text"]);
    assert_usage_error(&prunec(&["sweep", m, "--eval-text", ids, "--importance", "l2,l7", "--out", o]), &["unknown importance `l7`", "taylor-element1"]);
    assert_clean_failure(&prunec(&["sensitivity", m, "--eval-text", ids, "--ratio", "0.2", "--importance", "l2", "--out", o]), &["--unit-ratio"]);
    assert_clean_failure(&prunec(&["sweep", m, "--eval-text", "/no/such/file.txt", "--importance", "l2", "--out", o]), &["/no/such/file.txt"]);
    assert!(!out.with_extension("md").exists() && !out.with_extension("png").exists(), "nothing written on failure");
}

/// Without dependency groups each parameter loses its own lowest elements: as many as the
/// grouped selection removes from it, but not the same ones across coupled weights.
#[test]
fn without_dependency_zeroes_each_weight_on_its_own() {
    let mut model = prunec_frontends::load(&fixture("llama-mha")).unwrap();
    prunec_passes::run_group(&mut model).unwrap();
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    let opts = PruneOptions { amount: Amount::UnitRatio(0.5), mode: Mode::Block, attn_layers: None, mlp_layers: None, allocate: Allocate::Uniform, gqa: Gqa::KvHeads, round_to: 1, uniform: false };
    let sel = select(&model, &scores, &opts).unwrap();
    let (ablated, zeroed) = prunec_passes::ablate::without_dependency(&model, None, Importance::L2, 0, &sel).unwrap();
    assert!(zeroed > 0);
    let zero_rows = |name: &str, rows: usize, cols: usize, by_row: bool| -> Vec<usize> {
        let w = ablated.params.read_f32(name).unwrap();
        let n = if by_row { rows } else { cols };
        (0..n)
            .filter(|&i| {
                if by_row {
                    w[i * cols..(i + 1) * cols].iter().all(|&x| x == 0.0)
                } else {
                    (0..rows).all(|r| w[r * cols + i] == 0.0)
                }
            })
            .collect()
    };
    let shape = |n: &str| ablated.params.get(n).unwrap().shape.clone();
    let mut differ = false;
    for l in 0..4 {
        let p = format!("model.layers.{l}");
        let (q, o) = (format!("{p}.self_attn.q_proj.weight"), format!("{p}.self_attn.o_proj.weight"));
        let (sq, so) = (shape(&q), shape(&o));
        let q_rows = zero_rows(&q, sq[0], sq[1], true);
        let o_cols = zero_rows(&o, so[0], so[1], false);
        // half the heads' rows of q, half the heads' columns of o
        assert_eq!((q_rows.len(), o_cols.len()), (sq[0] / 2, so[1] / 2), "layer {l}");
        differ |= q_rows != o_cols;
        let (gate, down) = (format!("{p}.mlp.gate_proj.weight"), format!("{p}.mlp.down_proj.weight"));
        let (sg, sd) = (shape(&gate), shape(&down));
        assert_eq!(zero_rows(&gate, sg[0], sg[1], true).len(), sg[0] / 2);
        differ |= zero_rows(&gate, sg[0], sg[1], true) != zero_rows(&down, sd[0], sd[1], false);
    }
    assert!(differ, "coupled weights chose different indices somewhere");
    assert_eq!(ablated.params.numel(), model.params.numel(), "zeroed, not removed");
}
