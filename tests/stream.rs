//! The layer-streamed path against the resident one: every estimator's scores (1e-5 relative,
//! and the same units chosen), on the fixtures of every architecture and on SmolLM2-135M;
//! LLM-Pruner's own importances through the streamed path; streamed perplexity and zero-shot
//! log-likelihoods equal to the resident ones; and the command line choosing the streamed path
//! under a small `--max-memory`, writing what `--resident` writes.

mod common;

use std::collections::BTreeSet;

use common::{fixture, golden, prunec, texts};
use prunec_backends::runtime::{self, cpu, Cpu, CpuAutodiff, StreamOptions};
use prunec_ir::{Group, GroupKind, Model};
use prunec_passes::prune::{Allocate, Amount, Gqa, Mode, PruneOptions};
use prunec_passes::score::{score, score_with, scored_axes, Aggregation, Importance, Saliences, Scores};

const TAYLOR: [Importance; 4] =
    [Importance::TaylorVector, Importance::TaylorElement1, Importance::TaylorElement2, Importance::TaylorMix];

fn options(mode: Mode) -> PruneOptions {
    PruneOptions {
        amount: Amount::Ratio(0.2),
        mode,
        attn_layers: None,
        mlp_layers: None,
        allocate: Allocate::Uniform,
        gqa: Gqa::KvHeads,
        round_to: 1,
        uniform: false,
    }
}

/// Scores of every Taylor estimator by both paths, from one calibration each, for the groups
/// `scope` accepts. With `fisher`, the Fisher diagonal is measured with the gradient (one
/// sample per backward pass) and all four estimators are compared; without it, the first-order
/// ones, over micro-batches of `micro_batch` samples.
fn both_paths(
    model: &Model,
    samples: &[Vec<u32>],
    scope: &dyn Fn(&Group) -> bool,
    fisher: bool,
    micro_batch: usize,
) -> Vec<(Importance, Scores, Scores)> {
    let estimators: Vec<Importance> = TAYLOR.into_iter().filter(|i| fisher || !i.needs_fisher()).collect();
    let options = runtime::CalibrationOptions { fisher, micro_batch, wanted: None };
    let stats = runtime::calibrate::<CpuAutodiff>(model, &cpu(), samples, options, |_, _| {}).unwrap();
    let axes = scored_axes(model, scope);
    let mut saliences: Vec<Saliences> = estimators.iter().map(|_| Saliences::new()).collect();
    let opts = StreamOptions { fisher, wanted: axes.keys().cloned().collect(), micro_batch };
    let mut handed = BTreeSet::new();
    let summary = runtime::calibrate_streamed::<CpuAutodiff>(
        model,
        &cpu(),
        samples,
        &opts,
        |name, grads| {
            assert!(handed.insert(name.to_string()), "`{name}` handed over twice");
            let p = model.params.get(name).unwrap();
            let w = model.params.read_f32(name).unwrap();
            for (s, &importance) in saliences.iter_mut().zip(&estimators) {
                s.fold(importance, name, &w, &p.shape, &axes[name], &grads).unwrap();
            }
            Ok(())
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(handed, opts.wanted, "every wanted parameter handed over once");
    assert!((summary.loss - stats.loss).abs() < 1e-5 * stats.loss.abs(), "loss {} vs {}", summary.loss, stats.loss);
    estimators
        .iter()
        .zip(saliences)
        .map(|(&importance, sal)| {
            let resident = score(model, Some(&stats), importance, Aggregation::Sum, 0).unwrap();
            let streamed = score_with(model, sal, importance, Aggregation::Sum, 0, scope).unwrap();
            (importance, resident, streamed)
        })
        .collect()
}

/// Worst relative difference of the scored groups' unit and sub-unit scores (relative to each
/// group's largest score), checking the same units come out lowest.
fn compare(model: &Model, scope: &dyn Fn(&Group) -> bool, importance: Importance, resident: &Scores, streamed: &Scores) -> f64 {
    let groups = model.groups.as_ref().unwrap();
    let mut worst = 0.0f64;
    for (k, g) in groups.iter().enumerate() {
        let (r, s) = (&resident.groups[k], &streamed.groups[k]);
        if !scope(g) {
            assert!(!s.is_scored(), "{importance:?}: a group out of scope was scored");
            continue;
        }
        assert_eq!(r.units.len(), s.units.len());
        let scale = r.units.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
        let all_r = r.units.iter().chain(r.sub_units.iter().flatten());
        let all_s = s.units.iter().chain(s.sub_units.iter().flatten());
        for (a, b) in all_r.zip(all_s) {
            worst = worst.max((a - b).abs() / scale);
        }
        let order = |v: &[f64]| {
            let mut o: Vec<usize> = (0..v.len()).collect();
            o.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
            o
        };
        // the units a 20% cut removes are the same (ties aside: none in these scores)
        let n = r.units.len() / 5;
        let (mut lo_r, mut lo_s) = (order(&r.units)[..n].to_vec(), order(&s.units)[..n].to_vec());
        lo_r.sort_unstable();
        lo_s.sort_unstable();
        assert_eq!(lo_r, lo_s, "{importance:?} {} layer {:?}: other units chosen", g.kind, g.block);
    }
    worst
}

fn check_fixture(name: &str, samples: Vec<Vec<u32>>) {
    let mut model = prunec_frontends::load(&fixture(name)).unwrap();
    prunec_passes::run_group(&mut model).unwrap();
    for mode in [Mode::Block, Mode::Channel] {
        let opts = options(mode);
        let scope = |g: &Group| opts.prunes(g);
        for (fisher, micro_batch) in [(true, 1), (false, 2)] {
            for (importance, resident, streamed) in both_paths(&model, &samples, &scope, fisher, micro_batch) {
                let worst = compare(&model, &scope, importance, &resident, &streamed);
                println!("{name} {mode:?} micro-batch {micro_batch} {importance:?}: worst relative difference {worst:.2e}");
                assert!(worst < 1e-5, "{name} {mode:?} {importance:?}: {worst:e}");
            }
        }
    }
}

#[test]
fn streamed_scores_equal_resident_llama() {
    check_fixture("llama-mha", golden("llama-mha").rows("input_ids"));
    // tied embeddings: the hidden group's table is read by the lookup and the head
    check_fixture("llama-gqa", golden("llama-gqa").rows("input_ids"));
}

#[test]
fn streamed_scores_equal_resident_chatglm() {
    check_fixture("chatglm2-6b", golden("chatglm2-6b").rows("input_ids"));
    check_fixture("chatglm-6b", golden("chatglm-6b").rows("input_ids"));
}

/// LLM-Pruner's own importances (fixtures README §6) through the streamed path.
#[test]
fn streamed_scores_match_llm_pruner() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("llm-pruner-importance.json")).unwrap()).unwrap();
    let mut model = prunec_frontends::load(&fixture("llama-mha")).unwrap();
    prunec_passes::run_group(&mut model).unwrap();
    let opts = PruneOptions { attn_layers: Some(1..3), mlp_layers: Some(1..3), ..options(Mode::Block) };
    let scope = |g: &Group| opts.prunes(g);
    let rows = golden("llama-mha").rows("input_ids");
    let keys = [
        (Importance::TaylorVector, "taylor:vectorize"),
        (Importance::TaylorElement1, "taylor:param_first"),
        (Importance::TaylorElement2, "taylor:param_second"),
        (Importance::TaylorMix, "taylor:param_mix"),
    ];
    let groups = model.groups.clone().unwrap();
    for (importance, _, streamed) in both_paths(&model, &rows, &scope, true, 1) {
        let key = keys.iter().find(|(i, _)| *i == importance).unwrap().1;
        let mut checked = 0;
        for g in reference["variants"][key]["groups"].as_array().unwrap() {
            let layer = g["layer"].as_u64().unwrap() as u32;
            let kind = if g["kind"] == "attention" { GroupKind::Attention } else { GroupKind::Mlp };
            let k = groups.iter().position(|gr| gr.kind == kind && gr.block == Some(layer)).unwrap();
            let values = |g: &serde_json::Value| -> Vec<f64> {
                g["selection_importance"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
            };
            let want = values(g);
            // vector-wise scores are |Σ W·G|: a sum that cancels; its rounding error scales with
            // Σ |W·G|, the element-wise score of the same unit, which bounds the error instead
            let first = reference["variants"]["taylor:param_first"]["groups"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["layer"] == g["layer"] && f["kind"] == g["kind"])
                .map(values)
                .unwrap();
            let got = &streamed.groups[k].units;
            assert_eq!(got.len(), want.len());
            for ((a, b), f) in got.iter().zip(&want).zip(&first) {
                let scale = if importance == Importance::TaylorVector { b.abs().max(*f) } else { b.abs() };
                assert!((a - b).abs() / scale.max(1e-12) < 1e-4, "{key} {kind} layer {layer}: {a} vs {b}");
            }
            checked += 1;
        }
        assert_eq!(checked, 4, "{key}: attention and MLP of layers 1 and 2");
    }
}

#[test]
fn streamed_evaluation_equals_resident() {
    for name in ["llama-gqa", "chatglm-6b"] {
        let model = prunec_frontends::load(&fixture(name)).unwrap();
        let tokens: Vec<u32> = (0..200u32).map(|i| (i * 37 + 11) % 240 + 5).collect();
        let resident = runtime::perplexity::<Cpu>(&model, &cpu(), &tokens, 16, 3, |_, _| {}).unwrap();
        // groups of 2 batches: the parameters are read 2 times per segment
        let streamed = runtime::perplexity_streamed::<Cpu>(&model, &cpu(), &tokens, 16, 3, 96, |_, _| {}).unwrap();
        assert_eq!(resident.windows, streamed.windows);
        assert!((resident.mean_nll - streamed.mean_nll).abs() < 1e-9, "{name}: {resident:?} vs {streamed:?}");
        let requests: Vec<runtime::TokenRequest> = (0..7u32)
            .map(|i| runtime::TokenRequest {
                context: (0..3 + i).map(|t| (t * 13 + i) % 200 + 3).collect(),
                continuation: (0..1 + i % 3).map(|t| (t * 7 + i) % 200 + 3).collect(),
            })
            .collect();
        let a = runtime::loglikelihoods::<Cpu>(&model, &cpu(), &requests, 2, 64, |_, _| {}).unwrap();
        let b = runtime::loglikelihoods_streamed::<Cpu>(&model, &cpu(), &requests, 2, 64, 10, |_, _| {}).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-9, "{name}: {x} vs {y}");
        }
    }
}

/// The command line streams under a small budget, says so in the report, and writes exactly
/// what the resident path writes.
#[test]
fn a_small_budget_streams_and_writes_what_resident_writes() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("llama-gqa");
    let model = model.to_str().unwrap();
    // the fixture has no tokenizer: token ids, as JSONL rows
    let text = dir.path().join("eval.jsonl");
    let ids: Vec<u32> = (0..400u32).map(|i| (i * 37 + 11) % 240 + 5).collect();
    std::fs::write(&text, serde_json::json!({ "input_ids": ids }).to_string()).unwrap();
    let calib = dir.path().join("calib.jsonl");
    let rows: Vec<String> =
        golden("llama-gqa").rows("input_ids").iter().map(|r| serde_json::json!({ "input_ids": r }).to_string()).collect();
    std::fs::write(&calib, rows.join("\n")).unwrap();
    let mut reports = Vec::new();
    for (tag, flags) in [("resident", vec!["--resident"]), ("streamed", vec!["--max-memory", "64KiB"])] {
        let out = dir.path().join(tag);
        let report = dir.path().join(format!("{tag}.json"));
        let mut args = vec![model, "--pass", "group,score,prune", "--ratio", "0.2", "--importance", "taylor-mix"];
        args.extend(["--calib", calib.to_str().unwrap(), "-o", out.to_str().unwrap(), "--report", report.to_str().unwrap()]);
        args.extend(flags);
        let run = prunec(&args);
        let (_, stderr) = texts(&run);
        assert!(run.status.success(), "{tag}: {stderr}");
        if tag == "streamed" {
            assert!(stderr.contains("calibrate (backward)"), "per-segment progress lines:\n{stderr}");
        }
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(json["passes"][1]["mode"], tag, "{json}");
        assert_eq!(json["calibration"]["mode"], tag);
        reports.push(json);
        // the written model evaluates the same way both ways
        let mut eval = vec![out.to_str().unwrap(), "--pass", "eval", "--eval-text", text.to_str().unwrap(), "--seq-len", "32"];
        if tag == "streamed" {
            eval.extend(["--max-memory", "64KiB"]);
        }
        let run = prunec(&eval);
        let (stdout, stderr) = texts(&run);
        assert!(run.status.success(), "{tag} eval: {stderr}");
        reports.push(serde_json::json!({ "eval": stdout.lines().find(|l| l.starts_with("perplexity")).unwrap() }));
    }
    assert_eq!(reports[0]["widths"], reports[2]["widths"], "the same widths");
    assert_eq!(reports[1]["eval"], reports[3]["eval"], "the same perplexity, to the printed digits");
    let bytes = |tag: &str| std::fs::read(dir.path().join(tag).join("model.safetensors")).unwrap();
    assert_eq!(bytes("resident"), bytes("streamed"), "the same pruned weights, byte for byte");
    // --resident and --max-memory together are refused
    let run = prunec(&[model, "--pass", "group", "--resident", "--max-memory", "1GiB"]);
    common::assert_clean_failure(&run, &["--resident"]);
}

/// SmolLM2-135M (30 layers, grouped-query, tied embeddings): LLM-Pruner's recipe's groups
/// (layers 3..27) scored both ways with every Taylor estimator agree, and so do the hidden
/// group's scores (channel-wise), whose table the lookup and the head both read.
#[test]
fn smollm2_streamed_scores_equal_resident() {
    let Some(path) = common::smollm2() else { return };
    let mut model = prunec_frontends::load(&path).unwrap();
    prunec_passes::run_group(&mut model).unwrap();
    let tok = prunec_frontends::tokenizer::Tokenizer::for_model(&path).unwrap();
    let text = prunec_frontends::data::TextSource::Plain(prunec_frontends::data::EMBEDDED_CALIBRATION_TEXT.to_string());
    let samples = prunec_frontends::data::calibration_samples(&text, &tok, 10, 64, 0).unwrap();
    let recipe = PruneOptions { attn_layers: Some(3..27), mlp_layers: Some(3..27), ..options(Mode::Block) };
    let channel = options(Mode::Channel);
    for (label, opts) in [("block 3..27", &recipe), ("channel", &channel)] {
        let scope = |g: &Group| opts.prunes(g);
        for (importance, resident, streamed) in both_paths(&model, &samples, &scope, true, 1) {
            let worst = compare(&model, &scope, importance, &resident, &streamed);
            println!("smollm2 {label} {importance:?}: worst relative difference {worst:.2e}");
            assert!(worst < 1e-5, "smollm2 {label} {importance:?}: {worst:e}");
        }
    }
}
