//! The `prune` pass: its laws (pruning nothing changes no bit; a pruned model computes what
//! the original computes with the removed units' weights zeroed), LLM-Pruner's block-wise
//! recipe reproduced on `llama-mha`, and snapshots of pruned IR.

mod common;

use std::collections::BTreeSet;

use common::fixture;
use prunec_backends::runtime::{calibrate, cpu, CalibrationOptions, Cpu, CpuAutodiff, Executor};
use prunec_ir::{Model, Param};
use prunec_passes::prune::{apply, select, Allocate, Amount, Gqa, Mode, PruneOptions, Selection};
use prunec_passes::score::{score, Aggregation, Importance};

fn rows() -> Vec<Vec<u32>> {
    common::golden("llama-mha").rows("input_ids")
}

fn grouped(name: &str) -> Model {
    let mut m = prunec_frontends::load(&fixture(name)).unwrap();
    prunec_passes::run_group(&mut m).unwrap();
    m
}

fn logits(model: &Model) -> Vec<f32> {
    let exec = Executor::<Cpu>::new(model, &cpu()).unwrap();
    exec.forward(exec.ids(&rows()).unwrap()).unwrap().into_data().into_vec().unwrap()
}

fn block(amount: Amount) -> PruneOptions {
    PruneOptions { amount, mode: Mode::Block, attn_layers: None, mlp_layers: None, allocate: Allocate::Uniform, gqa: Gqa::KvHeads, round_to: 1, uniform: false }
}

/// The original model with every parameter slice of the selected units set to zero.
fn zeroed(model: &Model, selection: &Selection) -> Model {
    let mut z = model.clone();
    let groups = model.groups.as_ref().unwrap();
    let mut parts: Vec<(usize, Vec<prunec_ir::Element>)> = Vec::new();
    for (k, (g, units)) in groups.iter().zip(&selection.removed).enumerate() {
        for &u in units {
            parts.push((k, g.units[u].elements.clone()));
        }
        for &(u, sub) in selection.removed_sub.get(k).map(Vec::as_slice).unwrap_or(&[]) {
            parts.push((k, g.units[u].sub_units[sub].clone()));
        }
    }
    for (k, elements) in parts {
        let g = &groups[k];
        {
            for e in &elements {
                let ax = &g.axes[e.axis as usize];
                let Some((name, shape)) = &ax.param else { continue };
                let idx: BTreeSet<usize> = ax.indices(e.index).collect();
                let mut data = z.params.read_f32(name).unwrap().as_ref().clone();
                let inner: usize = shape[ax.axis + 1..].iter().product();
                let size = shape[ax.axis];
                for (i, v) in data.iter_mut().enumerate() {
                    if idx.contains(&((i / inner) % size)) {
                        *v = 0.0;
                    }
                }
                z.params.insert(name.clone(), Param::owned(shape.clone(), data).unwrap());
            }
        }
    }
    z
}

#[test]
fn pruning_nothing_changes_no_bit() {
    let mut model = grouped("llama-gqa");
    let before = logits(&model);
    let params: Vec<(String, Vec<f32>)> = model.params.iter().map(|(n, _)| (n.clone(), model.params.read_f32(n).unwrap().to_vec())).collect();
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    let sel = select(&model, &scores, &block(Amount::Ratio(0.0))).unwrap();
    assert!(sel.removed.iter().all(Vec::is_empty));
    let report = apply(&mut model, &sel).unwrap();
    assert_eq!(report.params_after, report.params_before);
    for (n, v) in params {
        assert_eq!(model.params.read_f32(&n).unwrap().as_ref(), &v, "{n}");
    }
    let after = logits(&model);
    assert!(before.iter().zip(&after).all(|(a, b)| a.to_bits() == b.to_bits()));
}

fn zeroing_law(name: &str, amount: Amount, importance: Importance) {
    zeroing_law_in(name, amount, importance, Mode::Block);
}

fn zeroing_law_in(name: &str, amount: Amount, importance: Importance, mode: Mode) {
    let model = grouped(name);
    let scores = score(&model, None, importance, Aggregation::Sum, 7).unwrap();
    let sel = select(&model, &scores, &PruneOptions { mode, ..block(amount) }).unwrap();
    assert!(sel.removed.iter().any(|r| !r.is_empty()), "something is pruned");
    let reference = logits(&zeroed(&model, &sel));
    let mut pruned = model.clone();
    let report = apply(&mut pruned, &sel).unwrap();
    assert!(report.params_after < report.params_before);
    let got = logits(&pruned);
    let diff = got.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let scale = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    println!("{name} {amount:?}: {} → {} params, max |Δ| {diff:e} (max |logit| {scale})", report.params_before, report.params_after);
    // 1e-5 of the logits' scale (5.8–6.8 here): the pruned model sums fewer terms than the
    // zeroed one, in another order, and f32 rounding differs by a few ulps per layer
    assert!(diff < 1e-5 * scale.max(1.0), "{name}: pruned and zeroed differ by {diff} (logits up to {scale})");
}

#[test]
fn zeroing_law_block_wise_mha() {
    zeroing_law("llama-mha", Amount::UnitRatio(0.25), Importance::L2);
    zeroing_law("llama-mha", Amount::Ratio(0.2), Importance::Random);
}

#[test]
fn zeroing_law_block_wise_gqa() {
    // whole key/value heads with their query heads
    zeroing_law("llama-gqa", Amount::UnitRatio(0.5), Importance::L1);
    zeroing_law("llama-gqa", Amount::Ratio(0.3), Importance::Random);
}

#[test]
fn global_ratio_stays_near_the_target_and_keeps_every_group() {
    let model = grouped("llama-mha");
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    let mut opts = block(Amount::Ratio(0.25));
    opts.allocate = Allocate::Sensitivity;
    let sel = select(&model, &scores, &opts).unwrap();
    let groups = model.groups.as_ref().unwrap();
    assert!(groups.iter().zip(&sel.removed).all(|(g, r)| r.len() < g.units.len()));
    let mut pruned = model.clone();
    let report = apply(&mut pruned, &sel).unwrap();
    let achieved = 1.0 - report.params_after as f64 / report.params_before as f64;
    assert!((achieved - 0.25).abs() < 0.02, "achieved {achieved}");
}

#[test]
fn ratio_out_of_range_is_refused() {
    let model = grouped("llama-mha");
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    for r in [-0.1, 1.0, 1.5, f64::NAN] {
        let e = select(&model, &scores, &block(Amount::Ratio(r))).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
    }
}

/// LLM-Pruner's block-wise recipe (`--pruning_ratio 0.25 --block_attention_layer_start 1
/// --block_attention_layer_end 3` and the same for MLP, Taylor `param_first`): the same heads
/// and channels go, the same shapes and parameter count come out.
#[test]
fn reproduces_llm_pruner_block_wise() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("llm-pruner-importance.json")).unwrap()).unwrap();
    let variant = &reference["variants"]["taylor:param_first"];
    let mut model = grouped("llama-mha");
    let stats = calibrate::<CpuAutodiff>(&model, &cpu(), &rows(), CalibrationOptions::default(), |_, _| {}).unwrap();
    let scores = score(&model, Some(&stats), Importance::TaylorElement1, Aggregation::Sum, 0).unwrap();
    let opts = PruneOptions {
        amount: Amount::UnitRatio(0.25),
        mode: Mode::Block,
        attn_layers: Some(1..3),
        mlp_layers: Some(1..3),
        allocate: Allocate::Uniform,
        gqa: Gqa::KvHeads,
        round_to: 1,
        uniform: false,
    };
    let sel = select(&model, &scores, &opts).unwrap();
    let groups = model.groups.clone().unwrap();
    for g in variant["groups"].as_array().unwrap() {
        let layer = g["layer"].as_u64().unwrap() as u32;
        let attention = g["kind"] == "attention";
        let k = groups
            .iter()
            .position(|gr| gr.block == Some(layer) && (gr.kind == prunec_ir::GroupKind::Attention) == attention && gr.kind != prunec_ir::GroupKind::Hidden)
            .unwrap();
        let want: Vec<usize> = g["pruned_units"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(sel.removed[k], want, "layer {layer} {}", g["kind"]);
    }
    let report = apply(&mut model, &sel).unwrap();
    assert_eq!(report.params_before, variant["params_before"].as_u64().unwrap() as usize);
    assert_eq!(report.params_after, variant["params_after"].as_u64().unwrap() as usize);
    for l in 1..3 {
        let shape = |n: &str| model.params.get(&format!("model.layers.{l}.{n}.weight")).unwrap().shape.clone();
        assert_eq!(shape("self_attn.q_proj"), [48, 64]);
        assert_eq!(shape("self_attn.k_proj"), [48, 64]);
        assert_eq!(shape("self_attn.o_proj"), [64, 48]);
        assert_eq!(shape("mlp.gate_proj"), [132, 64]);
        assert_eq!(shape("mlp.down_proj"), [64, 132]);
    }
    // the pruned graph still runs, and prints for the snapshot
    let _ = logits(&model);
    prunec_passes::run_group(&mut model).unwrap();
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("llama-mha.pruned-llm-pruner-block", prunec_ir::print(&model).unwrap());
    });
}

#[test]
fn pruned_gqa_snapshot() {
    let mut model = grouped("llama-gqa");
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    let sel = select(&model, &scores, &block(Amount::UnitRatio(0.5))).unwrap();
    apply(&mut model, &sel).unwrap();
    prunec_passes::run_group(&mut model).unwrap();
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("llama-gqa.pruned-l2-unit-0.5", prunec_ir::print(&model).unwrap());
    });
}

#[test]
fn zeroing_law_layer_wise() {
    // a removed decoder layer computes what the original computes with that layer's weights zeroed
    zeroing_law_in("llama-mha", Amount::UnitRatio(0.5), Importance::L2, Mode::Layer);
    zeroing_law_in("llama-gqa", Amount::Ratio(0.2), Importance::Random, Mode::Layer);
}

#[test]
fn layer_wise_removes_whole_blocks_and_writes_a_model_that_reads_back() {
    let mut model = grouped("llama-mha");
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    let opts = PruneOptions { mode: Mode::Layer, ..block(Amount::UnitRatio(0.5)) };
    let sel = select(&model, &scores, &opts).unwrap();
    apply(&mut model, &sel).unwrap();
    let kept: Vec<usize> = (0..4).filter(|l| model.params.get(&format!("model.layers.{l}.input_layernorm.weight")).is_some()).collect();
    assert_eq!(kept.len(), 2, "two of four layers removed, norms and all: {kept:?}");
    let before = logits(&model);
    // the emptied layers are left out and the others renumbered: a stock config of 2 layers
    assert_eq!(prunec_frontends::arch::llama::drop_empty_layers(&mut model).unwrap(), 2);
    assert_eq!(logits(&model), before);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    let config = prunec_frontends::arch::llama::hf_config(&model).unwrap();
    assert_eq!(config["num_hidden_layers"], 2);
    assert!(config.get("prunec_layer_widths").is_none(), "{config}");
    prunec_backends::hf_writer::write_hf_folder(&model, &config, &[], &[], &out, &[], Default::default()).unwrap();
    let reread = prunec_frontends::load(&out).unwrap();
    let after = logits(&reread);
    let diff = before.iter().zip(&after).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn query_heads_inside_kv_groups() {
    // llama-gqa: 8 query heads share 2 key/value heads; remove 2 query heads from each group
    let model = grouped("llama-gqa");
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    let opts = PruneOptions { gqa: Gqa::QueryHeadsEven, ..block(Amount::UnitRatio(0.5)) };
    let sel = select(&model, &scores, &opts).unwrap();
    let reference = logits(&zeroed(&model, &sel));
    let mut pruned = model.clone();
    apply(&mut pruned, &sel).unwrap();
    for l in 0..4 {
        let shape = |n: &str| pruned.params.get(&format!("model.layers.{l}.self_attn.{n}.weight")).unwrap().shape.clone();
        assert_eq!(shape("q_proj"), [32, 64], "4 of 8 query heads left");
        assert_eq!(shape("k_proj"), [16, 64], "both key/value heads kept");
        assert_eq!(shape("o_proj"), [64, 32]);
    }
    let got = logits(&pruned);
    let diff = got.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "pruned and zeroed differ by {diff}");
    // still a stock config: 4 heads sharing 2 key/value heads
    let config = prunec_frontends::arch::llama::hf_config(&pruned).unwrap();
    assert_eq!((config["num_attention_heads"].as_u64(), config["num_key_value_heads"].as_u64()), (Some(4), Some(2)));
    assert!(config.get("prunec_layer_widths").is_none());
}

#[test]
fn zeroing_law_channel_wise() {
    // RMSNorms rescaled (weight·sqrt(n/k), eps·n/k) so that the mean square over the channels
    // left equals the original one over all channels, the removed ones zero
    zeroing_law_in("llama-gqa", Amount::Ratio(0.2), Importance::Random, Mode::Channel);
    zeroing_law_in("llama-mha", Amount::UnitRatio(0.25), Importance::L2, Mode::Channel);
    zeroing_law_in("llama-gqa", Amount::Ratio(0.2), Importance::Random, Mode::Channel);
}

#[test]
fn channel_wise_rescales_every_norm_once() {
    let model = grouped("llama-mha");
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    let sel = select(&model, &scores, &PruneOptions { mode: Mode::Channel, ..block(Amount::UnitRatio(0.25)) }).unwrap();
    let mut pruned = model.clone();
    apply(&mut pruned, &sel).unwrap();
    let config = prunec_frontends::arch::llama::hf_config(&pruned).unwrap();
    assert_eq!(config["hidden_size"], 48);
    // 64 → 48 channels: eps × 4/3
    let eps = config["rms_norm_eps"].as_f64().unwrap();
    assert!((eps / 1e-6 - 64.0 / 48.0).abs() < 1e-5, "{config}");
}

/// Scores where, in every attention group, the first unit's first two query heads are the
/// least important: both go from one key/value head.
fn lopsided(model: &Model) -> prunec_passes::score::Scores {
    let mut scores = score(model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    for (g, s) in model.groups.as_ref().unwrap().iter().zip(&mut scores.groups) {
        if g.kind == prunec_ir::GroupKind::Attention {
            s.sub_units[0][0] = -2.0;
            s.sub_units[0][1] = -1.0;
        }
    }
    scores
}

#[test]
fn query_heads_pruned_unevenly() {
    // llama-gqa: 8 query heads over 2 key/value heads; unit ratio 0.3 removes 64 − int(64·0.7)
    // = 20 channels of q_proj, 2 whole heads, both from the first key/value head
    let model = grouped("llama-gqa");
    let opts = PruneOptions { gqa: Gqa::QueryHeads, ..block(Amount::UnitRatio(0.3)) };
    let sel = select(&model, &lopsided(&model), &opts).unwrap();
    let reference = logits(&zeroed(&model, &sel));
    let mut pruned = model.clone();
    apply(&mut pruned, &sel).unwrap();
    let got = logits(&pruned);
    let diff = got.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "pruned and zeroed differ by {diff}");
    let config = prunec_frontends::arch::llama::hf_config(&pruned).unwrap();
    let layers = config["prunec_layer_widths"].as_array().expect("uneven heads need per-layer widths");
    for w in layers {
        assert_eq!(w["num_attention_heads"], 6);
        assert_eq!(w["num_key_value_heads"], 2);
        assert_eq!(w["query_heads_per_kv_head"], serde_json::json!([2, 4]), "{config}");
    }
    // written and read back: the same model
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    prunec_backends::hf_writer::write_hf_folder(&pruned, &config, &[], &[], &out, &[], Default::default()).unwrap();
    let reread = prunec_frontends::load(&out).unwrap();
    let back = logits(&reread);
    let diff = back.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "read back: {diff}");
    // and groups again, each key/value unit with its own query heads
    let mut regrouped = reread;
    prunec_passes::run_group(&mut regrouped).unwrap();
    let attn = regrouped.groups.as_ref().unwrap().iter().find(|g| g.kind == prunec_ir::GroupKind::Attention).unwrap();
    let subs: Vec<usize> = attn.units.iter().map(|u| u.sub_units.len()).collect();
    assert_eq!(subs, [2, 4]);
}

#[test]
fn uneven_query_heads_keep_one_per_key_value_head() {
    // at unit ratio 0.9 the lopsided scores would empty the first key/value head: it keeps one
    let model = grouped("llama-gqa");
    let opts = PruneOptions { gqa: Gqa::QueryHeads, ..block(Amount::UnitRatio(0.9)) };
    let sel = select(&model, &lopsided(&model), &opts).unwrap();
    for (g, subs) in model.groups.as_ref().unwrap().iter().zip(&sel.removed_sub) {
        if g.kind == prunec_ir::GroupKind::Attention {
            assert_eq!(subs.len(), 6, "7 of 8 heads asked, 6 possible");
            assert_eq!(subs.iter().filter(|(u, _)| *u == 0).count(), 3);
        }
    }
    let mut pruned = model.clone();
    apply(&mut pruned, &sel).unwrap();
    assert_eq!(pruned.params.get("model.layers.0.self_attn.q_proj.weight").unwrap().shape, [16, 64]);
}

#[test]
fn zeroing_law_block_wise_chatglm2() {
    // heads, key/value groups and MLP channels inside fused query_key_value and dense_h_to_4h
    zeroing_law("chatglm2-6b", Amount::Ratio(0.25), Importance::L2);
    zeroing_law("chatglm2-6b", Amount::UnitRatio(0.5), Importance::Random);
}

#[test]
fn zeroing_law_block_wise_chatglm6b() {
    // heads inside the per-head query_key_value layout, GeLU MLP channels; the golden ids hold
    // [gMASK] and <sop>, so 2-D positions and the prefix mask are exercised
    zeroing_law("chatglm-6b", Amount::Ratio(0.25), Importance::L2);
    zeroing_law("chatglm-6b", Amount::UnitRatio(0.5), Importance::Random);
}

/// Pruning in steps: every step after the first regroups and rescoring (here by magnitude)
/// sees the pruned model; the steps together reach the asked-for ratio of the parameters as
/// they were, as one step does; a unit ratio cannot be split into steps.
#[test]
fn pruning_in_steps_rescores_the_pruned_model() {
    let original = grouped("llama-mha");
    let l2 = |m: &Model| score(m, None, Importance::L2, Aggregation::Sum, 0);
    let before = original.params.numel() as f64;
    let mut rescored = Vec::new();
    let mut heard = Vec::new();
    let mut model = original.clone();
    let reports = prunec_passes::prune::prune_in_steps(
        &mut model,
        l2(&original).unwrap(),
        &block(Amount::Ratio(0.3)),
        3,
        |m| {
            rescored.push(m.params.numel());
            l2(m)
        },
        |k, n, r| heard.push((k, n, r.params_after)),
    )
    .unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(rescored, vec![reports[0].params_after, reports[1].params_after], "rescored after each step but the last");
    assert_eq!(heard.iter().map(|h| (h.0, h.1)).collect::<Vec<_>>(), vec![(1, 3), (2, 3), (3, 3)]);
    assert!(reports.windows(2).all(|w| w[1].params_after < w[0].params_after), "every step removes some");
    let mut once = original.clone();
    let one = prunec_passes::prune::prune_in_steps(&mut once, l2(&original).unwrap(), &block(Amount::Ratio(0.3)), 1, |_| -> prunec_passes::Result<_> { unreachable!() }, |_, _, _| {})
        .unwrap();
    for achieved in [reports[2].params_after, one[0].params_after] {
        let removed = 1.0 - achieved as f64 / before;
        assert!((removed - 0.3).abs() < 0.05, "removed {removed:.3} of the parameters");
    }
    let e = prunec_passes::prune::prune_in_steps(&mut once, l2(&original).unwrap(), &block(Amount::UnitRatio(0.3)), 2, l2, |_, _, _| {});
    assert!(e.unwrap_err().to_string().contains("ratio of the parameters"));
}

/// Uniform widths: every group of a kind loses as many units, with query heads taken evenly.
#[test]
fn uniform_selection_keeps_layers_alike() {
    let model = grouped("llama-gqa");
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    let opts = PruneOptions { gqa: Gqa::QueryHeads, uniform: true, ..block(Amount::UnitRatio(0.5)) };
    let sel = select(&model, &scores, &opts).unwrap();
    let groups = model.groups.as_ref().unwrap();
    for kind in [prunec_ir::GroupKind::Attention, prunec_ir::GroupKind::Mlp] {
        let counts: BTreeSet<(usize, usize)> = groups
            .iter()
            .zip(sel.removed.iter().zip(&sel.removed_sub))
            .filter(|(g, _)| g.kind == kind)
            .map(|(_, (r, sub))| (r.len(), sub.len()))
            .collect();
        assert_eq!(counts.len(), 1, "{kind}: {counts:?}");
    }
    let layer = PruneOptions { mode: Mode::Layer, ..opts };
    assert!(select(&model, &scores, &layer).unwrap_err().to_string().contains("layer-wise"));
}

/// Gemma 3: heads and MLP channels (block-wise), query heads inside key/value groups, and
/// hidden channels (channel-wise: the `(1 + w)` norms rescale weight and offset together, the
/// embedding keeps its scale √64 of the original width) all compute what zeroing computes.
#[test]
fn zeroing_law_gemma3() {
    zeroing_law("gemma3-tiny", Amount::UnitRatio(0.5), Importance::L1);
    zeroing_law("gemma3-tiny", Amount::Ratio(0.3), Importance::Random);
    zeroing_law_in("gemma3-tiny", Amount::UnitRatio(0.25), Importance::L2, Mode::Channel);
    let model = grouped("gemma3-tiny");
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    let sel = select(&model, &scores, &PruneOptions { gqa: Gqa::QueryHeadsEven, ..block(Amount::UnitRatio(0.5)) }).unwrap();
    let reference = logits(&zeroed(&model, &sel));
    let mut pruned = model.clone();
    apply(&mut pruned, &sel).unwrap();
    let got = logits(&pruned);
    let diff = got.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-5 * 10.0, "pruned and zeroed differ by {diff}");
    // 2 of 4 query heads left, one per key/value head: a stock config
    let config = prunec_frontends::arch::gemma3::hf_config(&pruned).unwrap();
    assert_eq!((config["num_attention_heads"].as_u64(), config["num_key_value_heads"].as_u64()), (Some(2), Some(2)));
    assert!(config.get("prunec_layer_widths").is_none());
}

/// Pruning Gemma 3's hidden channels leaves the embedding scaled by √ of the original width,
/// which transformers would recompute from the pruned `hidden_size`: its HF config is refused,
/// naming the reason.
#[test]
fn gemma3_hidden_pruning_is_not_written_as_hf() {
    let model = grouped("gemma3-tiny");
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    let sel = select(&model, &scores, &PruneOptions { mode: Mode::Channel, ..block(Amount::UnitRatio(0.25)) }).unwrap();
    let mut pruned = model.clone();
    apply(&mut pruned, &sel).unwrap();
    assert_eq!(pruned.params.get("model.embed_tokens.weight").unwrap().shape, [256, 48]);
    let e = prunec_frontends::arch::gemma3::hf_config(&pruned).unwrap_err().to_string();
    assert!(e.contains("hidden channels were pruned") && e.contains("config.json"), "{e}");
}

// The LLaMA-like families (`scripts/make-arch-fixtures`): each removed unit takes its own
// parameters — Qwen2's q/k/v bias rows with their heads — and the pruned model computes what
// the zeroed one computes.

#[test]
fn zeroing_law_qwen2() {
    zeroing_law("qwen2", Amount::UnitRatio(0.5), Importance::L1);
    zeroing_law("qwen2", Amount::Ratio(0.3), Importance::Random);
    zeroing_law_in("qwen2", Amount::Ratio(0.2), Importance::Random, Mode::Channel);
}

#[test]
fn zeroing_law_qwen3() {
    // the per-head norms of q and k stay whole while heads go
    zeroing_law("qwen3", Amount::UnitRatio(0.5), Importance::L1);
    zeroing_law("qwen3", Amount::Ratio(0.3), Importance::Random);
    zeroing_law_in("qwen3", Amount::Ratio(0.2), Importance::Random, Mode::Channel);
    zeroing_law_in("qwen3", Amount::UnitRatio(0.34), Importance::L2, Mode::Layer);
}

#[test]
fn zeroing_law_mistral() {
    zeroing_law("mistral", Amount::UnitRatio(0.5), Importance::L1);
    zeroing_law("mistral", Amount::Ratio(0.3), Importance::Random);
    zeroing_law_in("mistral", Amount::Ratio(0.2), Importance::Random, Mode::Channel);
    zeroing_law_in("mistral", Amount::UnitRatio(0.34), Importance::L2, Mode::Layer);
}

/// Phi-3: heads (whole key/value heads with their query heads) and MLP channels inside the
/// fused `qkv_proj` and `gate_up_proj`, query heads alone inside key/value groups, hidden
/// channels, and whole layers: each pruned model computes what the zeroed one computes.
#[test]
fn zeroing_law_phi3() {
    zeroing_law("phi3", Amount::UnitRatio(0.5), Importance::L1);
    zeroing_law("phi3", Amount::Ratio(0.3), Importance::Random);
    zeroing_law_in("phi3", Amount::Ratio(0.2), Importance::Random, Mode::Channel);
    zeroing_law_in("phi3", Amount::UnitRatio(0.34), Importance::L2, Mode::Layer);
    let model = grouped("phi3");
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    let sel = select(&model, &scores, &PruneOptions { gqa: Gqa::QueryHeadsEven, ..block(Amount::UnitRatio(0.5)) }).unwrap();
    let reference = logits(&zeroed(&model, &sel));
    let mut pruned = model.clone();
    apply(&mut pruned, &sel).unwrap();
    for l in 0..3 {
        let shape = |n: &str| pruned.params.get(&format!("model.layers.{l}.{n}.weight")).unwrap().shape.clone();
        // 2 of 4 query heads left, one per key/value head: q 32 rows, k and v 32 each
        assert_eq!(shape("self_attn.qkv_proj"), [32 + 2 * 32, 64]);
        assert_eq!(shape("self_attn.o_proj"), [64, 32]);
    }
    let got = logits(&pruned);
    let diff = got.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    println!("phi3 query heads: pruned and zeroed differ by {diff:e}");
    assert!(diff < 1e-5, "pruned and zeroed differ by {diff}");
    let config = prunec_frontends::arch::phi3::hf_config(&pruned).unwrap();
    assert_eq!((config["num_attention_heads"].as_u64(), config["num_key_value_heads"].as_u64()), (Some(2), Some(2)));
    assert_eq!(config["head_dim"], 16, "hidden / heads would be 32");
    assert!(config.get("prunec_layer_widths").is_none());
}

/// Phi-3, query heads pruned unevenly inside the fused `qkv_proj` (one of the first key/value
/// head's two): the zeroing law holds, the config lists each layer's query heads per key/value
/// head, and the written folder reads back as the same model and groups again by them.
#[test]
fn phi3_query_heads_pruned_unevenly() {
    let model = grouped("phi3");
    // unit ratio 0.3 removes 64 − int(64·0.7) = 20 channels of q: one whole head of 16
    let opts = PruneOptions { gqa: Gqa::QueryHeads, ..block(Amount::UnitRatio(0.3)) };
    let sel = select(&model, &lopsided(&model), &opts).unwrap();
    let reference = logits(&zeroed(&model, &sel));
    let mut pruned = model.clone();
    apply(&mut pruned, &sel).unwrap();
    assert_eq!(pruned.params.get("model.layers.0.self_attn.qkv_proj.weight").unwrap().shape, [48 + 2 * 32, 64]);
    let got = logits(&pruned);
    let diff = got.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "pruned and zeroed differ by {diff}");
    let config = prunec_frontends::arch::phi3::hf_config(&pruned).unwrap();
    let layers = config["prunec_layer_widths"].as_array().expect("uneven heads need per-layer widths");
    for w in layers {
        assert_eq!((w["num_attention_heads"].as_u64(), w["num_key_value_heads"].as_u64()), (Some(3), Some(2)));
        assert_eq!(w["query_heads_per_kv_head"], serde_json::json!([1, 2]), "{config}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    prunec_backends::hf_writer::write_hf_folder(&pruned, &config, &[], &[], &out, &[], Default::default()).unwrap();
    let mut reread = prunec_frontends::load(&out).unwrap();
    let back = logits(&reread);
    let diff = back.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "read back: {diff}");
    prunec_passes::run_group(&mut reread).unwrap();
    let attn = reread.groups.as_ref().unwrap().iter().find(|g| g.kind == prunec_ir::GroupKind::Attention).unwrap();
    // the key/value head left with one query head has no part that can go alone
    assert_eq!(attn.units.iter().map(|u| u.sub_units.len()).collect::<Vec<_>>(), [0, 2]);
}
