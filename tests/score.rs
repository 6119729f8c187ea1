//! The `score` pass against LLM-Pruner's own importances on `llama-mha`
//! (`tests/fixtures/llm-pruner-importance.json`, fixtures README §6): every variant it covers,
//! per-head scores of the attention groups and per-channel scores of the MLP groups of layers
//! 1 and 2, within 1e-4 relative, and the same units chosen for removal.

mod common;

use common::fixture;
use prunec_backends::runtime::{calibrate, cpu, CalibrationOptions, CpuAutodiff};
use prunec_ir::GroupKind;
use prunec_passes::score::{score, Aggregation, Importance};

fn golden_rows() -> Vec<Vec<u32>> {
    common::golden("llama-mha").rows("input_ids")
}

#[test]
fn scores_match_llm_pruner() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("llm-pruner-importance.json")).unwrap()).unwrap();
    let mut model = prunec_frontends::load(&fixture("llama-mha")).unwrap();
    prunec_passes::run_group(&mut model).unwrap();
    let stats =
        calibrate::<CpuAutodiff>(&model, &cpu(), &golden_rows(), CalibrationOptions { fisher: true, micro_batch: 1, wanted: None }, |_, _| {})
            .unwrap();
    let groups = model.groups.clone().unwrap();
    let variants = [
        ("taylor:param_first", Importance::TaylorElement1, Aggregation::Sum),
        ("taylor:param_second", Importance::TaylorElement2, Aggregation::Sum),
        ("taylor:param_mix", Importance::TaylorMix, Aggregation::Sum),
        ("taylor:vectorize", Importance::TaylorVector, Aggregation::Sum),
        ("l2", Importance::L2, Aggregation::Mean),
        ("l1", Importance::L1, Aggregation::Mean),
    ];
    for (key, importance, aggregation) in variants {
        let scores = score(&model, Some(&stats), importance, aggregation, 0).unwrap();
        let mut worst = 0.0f64;
        for g in reference["variants"][key]["groups"].as_array().unwrap() {
            let layer = g["layer"].as_u64().unwrap() as u32;
            let kind = if g["kind"] == "attention" { GroupKind::Attention } else { GroupKind::Mlp };
            let k = groups.iter().position(|gr| gr.kind == kind && gr.block == Some(layer)).unwrap();
            let got = &scores.groups[k].units;
            let want: Vec<f64> = g["selection_importance"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(got.len(), want.len(), "{key} {kind} layer {layer}");
            for (a, b) in got.iter().zip(&want) {
                let rel = (a - b).abs() / b.abs().max(1e-12);
                worst = worst.max(rel);
                assert!(rel < 1e-4, "{key} {kind} layer {layer}: {a} vs {b}");
            }
            // the same units come out lowest
            let n = g["pruned_units"].as_array().unwrap().len();
            let mut order: Vec<usize> = (0..got.len()).collect();
            order.sort_by(|&a, &b| got[a].total_cmp(&got[b]));
            let mut chosen: Vec<u64> = order[..n].iter().map(|&u| u as u64).collect();
            chosen.sort_unstable();
            let want_units: Vec<u64> = g["pruned_units"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            assert_eq!(chosen, want_units, "{key} {kind} layer {layer}");
        }
        println!("{key}: worst relative error {worst:e}");
    }
}

#[test]
fn random_scores_are_seeded_and_gradients_are_required() {
    let mut model = prunec_frontends::load(&fixture("llama-gqa")).unwrap();
    prunec_passes::run_group(&mut model).unwrap();
    let a = score(&model, None, Importance::Random, Aggregation::Sum, 1).unwrap();
    let b = score(&model, None, Importance::Random, Aggregation::Sum, 1).unwrap();
    let c = score(&model, None, Importance::Random, Aggregation::Sum, 2).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let e = score(&model, None, Importance::TaylorElement1, Aggregation::Sum, 0).unwrap_err();
    assert!(e.to_string().contains("needs the gradient"), "{e}");
    // sub-units get their own scores
    let attn = model.groups.as_ref().unwrap().iter().position(|g| g.kind == GroupKind::Attention).unwrap();
    assert_eq!(a.groups[attn].sub_units[0].len(), 4);
}
