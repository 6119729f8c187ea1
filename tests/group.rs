//! The `group` pass on the LLaMA fixtures: counts, the head ↔ key/value correspondence of
//! grouped-query attention, and snapshots of the dependency IR.

mod common;

use common::fixture;
use prunec_ir::{Group, GroupKind, Model};

fn grouped(name: &str) -> Model {
    let mut model = prunec_frontends::load(&fixture(name)).expect("the fixture loads");
    prunec_passes::run_group(&mut model).expect("group runs");
    model
}

fn of_kind(model: &Model, kind: GroupKind) -> Vec<&Group> {
    model.groups.as_ref().expect("groups").iter().filter(|g| g.kind == kind).collect()
}

/// The indices of parameter `name`'s axis `axis` covered by `elements`.
fn rows(group: &Group, elements: &[prunec_ir::Element], name: &str, axis: usize) -> Vec<std::ops::Range<usize>> {
    let k = group
        .axes
        .iter()
        .position(|a| a.axis == axis && a.param.as_ref().is_some_and(|(n, _)| n == name))
        .unwrap_or_else(|| panic!("{name}[{axis}] is not in the group"));
    group.indices_on(elements, k)
}

#[test]
fn llama_gqa_groups_heads_by_key_value_head() {
    let model = grouped("llama-gqa");
    let attn = of_kind(&model, GroupKind::Attention);
    assert_eq!(attn.len(), 4);
    for (layer, g) in attn.iter().enumerate() {
        assert_eq!(g.block, Some(layer as u32));
        assert_eq!(g.units.len(), 2, "two key/value heads");
        let p = format!("model.layers.{layer}.self_attn");
        for (kv, unit) in g.units.iter().enumerate() {
            // key/value head kv serves query heads 4kv..4kv+3 (j ÷ (8 ÷ 2) = kv), head_dim 8
            assert_eq!(rows(g, &unit.elements, &format!("{p}.k_proj.weight"), 0), vec![kv * 8..kv * 8 + 8]);
            assert_eq!(rows(g, &unit.elements, &format!("{p}.v_proj.weight"), 0), vec![kv * 8..kv * 8 + 8]);
            assert_eq!(rows(g, &unit.elements, &format!("{p}.q_proj.weight"), 0), vec![kv * 32..kv * 32 + 32]);
            assert_eq!(rows(g, &unit.elements, &format!("{p}.o_proj.weight"), 1), vec![kv * 32..kv * 32 + 32]);
            assert_eq!(g.params_in(&unit.elements), 2048 + 512 + 512 + 2048);
            // the query heads inside can go alone: q rows and o columns, no k/v
            assert_eq!(unit.sub_units.len(), 4);
            for (j, sub) in unit.sub_units.iter().enumerate() {
                let head = kv * 4 + j;
                assert_eq!(rows(g, sub, &format!("{p}.q_proj.weight"), 0), vec![head * 8..head * 8 + 8]);
                assert_eq!(rows(g, sub, &format!("{p}.o_proj.weight"), 1), vec![head * 8..head * 8 + 8]);
                assert!(rows(g, sub, &format!("{p}.k_proj.weight"), 0).is_empty());
                assert_eq!(g.params_in(sub), 2 * 8 * 64);
            }
        }
    }
    let mlp = of_kind(&model, GroupKind::Mlp);
    assert_eq!(mlp.len(), 4);
    assert!(mlp.iter().all(|g| g.units.len() == 176 && g.params_per_unit() == (192, 192)));
    let hidden = of_kind(&model, GroupKind::Hidden);
    assert_eq!(hidden.len(), 1);
    assert_eq!(hidden[0].units.len(), 64);
    // the tied embedding is one parameter: its column counts once
    let names: Vec<&str> = hidden[0].axes.iter().filter_map(|a| a.param.as_ref().map(|(n, _)| n.as_str())).collect();
    assert!(names.contains(&"model.embed_tokens.weight") && !names.contains(&"lm_head.weight"));
    assert_eq!(names.len(), 1 + 4 * 9 + 1, "embedding, 9 per layer, final norm");
}

#[test]
fn llama_mha_groups_whole_heads() {
    let model = grouped("llama-mha");
    let attn = of_kind(&model, GroupKind::Attention);
    assert_eq!(attn.len(), 4);
    for g in &attn {
        assert_eq!(g.units.len(), 4);
        assert!(g.units.iter().all(|u| u.sub_units.is_empty()), "one key/value head per query head: nothing finer");
        assert_eq!(g.params_per_unit(), (4 * 16 * 64, 4 * 16 * 64));
    }
    let hidden = of_kind(&model, GroupKind::Hidden);
    assert_eq!(hidden.len(), 1);
    let names: Vec<&str> = hidden[0].axes.iter().filter_map(|a| a.param.as_ref().map(|(n, _)| n.as_str())).collect();
    assert!(names.contains(&"lm_head.weight"), "the untied LM head's columns are hidden channels");
    assert_eq!(names.len(), 1 + 4 * 9 + 2);
}

fn snapshot(name: &str) {
    let model = grouped(name);
    let text = prunec_ir::print(&model).expect("prints");
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(format!("{name}.group"), text);
    });
}

#[test]
fn snapshot_llama_mha() {
    snapshot("llama-mha");
}

#[test]
fn snapshot_chatglm2() {
    // heads and key/value groups inside the fused query_key_value, MLP channels inside the
    // fused dense_h_to_4h: found through the slices' axis mappings
    snapshot("chatglm2-6b");
}

#[test]
fn snapshot_chatglm6b() {
    // heads found through the per-head layout of the fused query_key_value (heads split
    // before q, k and v are sliced), with LayerNorm biases and the alpha-scaled residual
    snapshot("chatglm-6b");
}

#[test]
fn snapshot_llama_gqa() {
    snapshot("llama-gqa");
}

/// Gemma 3: two key/value heads of two query heads each; the q/k norms (over `head_dim`) belong
/// to no group (pruning whole heads leaves them whole); the hidden stream reaches the tied
/// embedding, the four `(1 + w)` norms of every layer and the final norm.
#[test]
fn gemma3_groups() {
    let model = grouped("gemma3-tiny");
    let attn = of_kind(&model, GroupKind::Attention);
    assert_eq!(attn.len(), 6);
    for (layer, g) in attn.iter().enumerate() {
        let p = format!("model.layers.{layer}.self_attn");
        assert_eq!(g.units.len(), 2, "two key/value heads");
        for (kv, unit) in g.units.iter().enumerate() {
            assert_eq!(rows(g, &unit.elements, &format!("{p}.k_proj.weight"), 0), vec![kv * 16..kv * 16 + 16]);
            assert_eq!(rows(g, &unit.elements, &format!("{p}.q_proj.weight"), 0), vec![kv * 32..kv * 32 + 32]);
            assert_eq!(rows(g, &unit.elements, &format!("{p}.o_proj.weight"), 1), vec![kv * 32..kv * 32 + 32]);
            assert_eq!(unit.sub_units.len(), 2);
        }
        let names: Vec<&str> = g.axes.iter().filter_map(|a| a.param.as_ref().map(|(n, _)| n.as_str())).collect();
        assert!(!names.iter().any(|n| n.contains("q_norm") || n.contains("k_norm")), "{names:?}");
    }
    let mlp = of_kind(&model, GroupKind::Mlp);
    assert_eq!(mlp.len(), 6);
    assert!(mlp.iter().all(|g| g.units.len() == 64 && g.params_per_unit() == (192, 192)));
    let hidden = of_kind(&model, GroupKind::Hidden);
    assert_eq!(hidden.len(), 1);
    assert_eq!(hidden[0].units.len(), 64);
    let names: Vec<&str> = hidden[0].axes.iter().filter_map(|a| a.param.as_ref().map(|(n, _)| n.as_str())).collect();
    assert!(names.contains(&"model.embed_tokens.weight") && names.contains(&"model.norm.weight"));
    for norm in ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"] {
        assert!(names.contains(&format!("model.layers.3.{norm}.weight").as_str()), "{norm}");
    }
    assert_eq!(names.len(), 1 + 6 * 11 + 1, "embedding, 11 per layer (7 projections, 4 norms), final norm");
}

#[test]
fn snapshot_gemma3() {
    // (1 + w) norms print their offset; the embedding's √64 scale; sliding layers their window
    snapshot("gemma3-tiny");
}

#[test]
fn qwen2_biases_go_with_their_heads() {
    // 8 query heads of 8 over 2 key/value heads; q/k/v biases, no o bias
    let model = grouped("qwen2");
    let attn = of_kind(&model, GroupKind::Attention);
    assert_eq!(attn.len(), 3);
    for (layer, g) in attn.iter().enumerate() {
        let p = format!("model.layers.{layer}.self_attn");
        assert_eq!(g.units.len(), 2);
        for (kv, unit) in g.units.iter().enumerate() {
            for n in ["k_proj.weight", "k_proj.bias", "v_proj.weight", "v_proj.bias"] {
                assert_eq!(rows(g, &unit.elements, &format!("{p}.{n}"), 0), vec![kv * 8..kv * 8 + 8], "{n}");
            }
            for n in ["q_proj.weight", "q_proj.bias"] {
                assert_eq!(rows(g, &unit.elements, &format!("{p}.{n}"), 0), vec![kv * 32..kv * 32 + 32], "{n}");
            }
            assert_eq!(rows(g, &unit.elements, &format!("{p}.o_proj.weight"), 1), vec![kv * 32..kv * 32 + 32]);
            // q 32 rows of 64 and their biases, k and v 8 rows each and theirs, o 32 columns
            assert_eq!(g.params_in(&unit.elements), 2048 + 32 + 2 * (512 + 8) + 2048);
            assert_eq!(unit.sub_units.len(), 4);
            for (j, sub) in unit.sub_units.iter().enumerate() {
                let head = kv * 4 + j;
                assert_eq!(rows(g, sub, &format!("{p}.q_proj.bias"), 0), vec![head * 8..head * 8 + 8]);
                assert_eq!(g.params_in(sub), 2 * 8 * 64 + 8);
            }
        }
    }
    let mlp = of_kind(&model, GroupKind::Mlp);
    assert!(mlp.len() == 3 && mlp.iter().all(|g| g.units.len() == 96));
    let hidden = of_kind(&model, GroupKind::Hidden);
    assert_eq!(hidden.len(), 1);
    let names: Vec<&str> = hidden[0].axes.iter().filter_map(|a| a.param.as_ref().map(|(n, _)| n.as_str())).collect();
    assert!(!names.iter().any(|n| n.ends_with(".bias")), "no bias lies along the hidden stream: {names:?}");
    assert_eq!(names.len(), 1 + 3 * 9 + 1, "tied embedding, 9 per layer, final norm");
}

#[test]
fn qwen3_head_norms_stay_whole() {
    // 4 query heads of 24 over 2 key/value heads; each head's q/k RMSNorm weight ([24]) is
    // shared by every head, so it belongs to no unit: pruning heads leaves it whole
    let model = grouped("qwen3");
    let attn = of_kind(&model, GroupKind::Attention);
    assert_eq!(attn.len(), 3);
    for (layer, g) in attn.iter().enumerate() {
        let p = format!("model.layers.{layer}.self_attn");
        assert_eq!(g.units.len(), 2);
        for (kv, unit) in g.units.iter().enumerate() {
            for n in ["k_proj.weight", "v_proj.weight"] {
                assert_eq!(rows(g, &unit.elements, &format!("{p}.{n}"), 0), vec![kv * 24..kv * 24 + 24], "{n}");
            }
            assert_eq!(rows(g, &unit.elements, &format!("{p}.q_proj.weight"), 0), vec![kv * 48..kv * 48 + 48]);
            assert_eq!(rows(g, &unit.elements, &format!("{p}.o_proj.weight"), 1), vec![kv * 48..kv * 48 + 48]);
            // q 48 rows of 64, k and v 24 rows each, o 48 columns: no norm weight
            assert_eq!(g.params_in(&unit.elements), 48 * 64 + 2 * 24 * 64 + 64 * 48);
            assert_eq!(unit.sub_units.len(), 2);
        }
    }
    let grouped_params: Vec<&str> =
        model.groups.as_ref().unwrap().iter().flat_map(|g| g.axes.iter().filter_map(|a| a.param.as_ref().map(|(n, _)| n.as_str()))).collect();
    assert!(!grouped_params.iter().any(|n| n.contains("q_norm") || n.contains("k_norm")), "{grouped_params:?}");
    assert!(of_kind(&model, GroupKind::Mlp).iter().all(|g| g.units.len() == 96));
    assert_eq!(of_kind(&model, GroupKind::Hidden)[0].units.len(), 64);
}

#[test]
fn mistral_groups_as_llama() {
    // the window changes which positions attend, not which units couple
    let model = grouped("mistral");
    let attn = of_kind(&model, GroupKind::Attention);
    assert!(attn.len() == 3 && attn.iter().all(|g| g.units.len() == 2 && g.units.iter().all(|u| u.sub_units.len() == 2)));
    assert!(of_kind(&model, GroupKind::Mlp).iter().all(|g| g.units.len() == 96));
    assert_eq!(of_kind(&model, GroupKind::Hidden)[0].units.len(), 64);
}

#[test]
fn snapshot_qwen2() {
    snapshot("qwen2");
}

#[test]
fn snapshot_qwen3() {
    snapshot("qwen3");
}

#[test]
fn snapshot_mistral() {
    snapshot("mistral");
}

/// The indices of parameter `name`'s axis `axis` covered by `elements`, over every axis of the
/// group on it (a fused projection is reached through several slices).
fn all_rows(group: &Group, elements: &[prunec_ir::Element], name: &str, axis: usize) -> Vec<std::ops::Range<usize>> {
    let mut ranges: Vec<std::ops::Range<usize>> = (0..group.axes.len())
        .filter(|&k| group.axes[k].axis == axis && group.axes[k].param.as_ref().is_some_and(|(n, _)| n == name))
        .flat_map(|k| group.indices_on(elements, k))
        .collect();
    ranges.sort_by_key(|r| r.start);
    ranges
}

#[test]
fn phi3_heads_and_channels_inside_the_fused_projections() {
    // 4 query heads of 16 over 2 key/value heads: qkv_proj rows are q 0..64, k 64..96, v 96..128
    let model = grouped("phi3");
    let attn = of_kind(&model, GroupKind::Attention);
    assert_eq!(attn.len(), 3);
    for (layer, g) in attn.iter().enumerate() {
        let p = format!("model.layers.{layer}.self_attn");
        assert_eq!(g.units.len(), 2, "two key/value heads");
        for (kv, unit) in g.units.iter().enumerate() {
            // key/value head kv with its query heads 2kv and 2kv+1
            let want = vec![kv * 32..kv * 32 + 32, 64 + kv * 16..64 + kv * 16 + 16, 96 + kv * 16..96 + kv * 16 + 16];
            assert_eq!(all_rows(g, &unit.elements, &format!("{p}.qkv_proj.weight"), 0), want);
            assert_eq!(all_rows(g, &unit.elements, &format!("{p}.o_proj.weight"), 1), vec![kv * 32..kv * 32 + 32]);
            // q 32 rows, k and v 16 each, of 64 columns; o 32 columns of 64 rows
            assert_eq!(g.params_in(&unit.elements), (32 + 16 + 16) * 64 + 64 * 32);
            assert_eq!(unit.sub_units.len(), 2);
            for (j, sub) in unit.sub_units.iter().enumerate() {
                let head = kv * 2 + j;
                assert_eq!(all_rows(g, sub, &format!("{p}.qkv_proj.weight"), 0), vec![head * 16..head * 16 + 16], "q rows only");
                assert_eq!(all_rows(g, sub, &format!("{p}.o_proj.weight"), 1), vec![head * 16..head * 16 + 16]);
                assert_eq!(g.params_in(sub), 2 * 16 * 64);
            }
        }
    }
    let mlp = of_kind(&model, GroupKind::Mlp);
    assert_eq!(mlp.len(), 3);
    for (layer, g) in mlp.iter().enumerate() {
        assert_eq!(g.units.len(), 96);
        assert_eq!(g.params_per_unit(), (192, 192), "a gate row, an up row, a down column");
        for (j, unit) in g.units.iter().enumerate().step_by(37) {
            let p = format!("model.layers.{layer}.mlp");
            assert_eq!(all_rows(g, &unit.elements, &format!("{p}.gate_up_proj.weight"), 0), vec![j..j + 1, 96 + j..97 + j]);
            assert_eq!(all_rows(g, &unit.elements, &format!("{p}.down_proj.weight"), 1), vec![j..j + 1]);
        }
    }
    let hidden = of_kind(&model, GroupKind::Hidden);
    assert_eq!(hidden.len(), 1);
    assert_eq!(hidden[0].units.len(), 64);
    let names: std::collections::BTreeSet<&str> = hidden[0].axes.iter().filter_map(|a| a.param.as_ref().map(|(n, _)| n.as_str())).collect();
    assert!(names.contains("lm_head.weight") && names.contains("model.layers.2.self_attn.qkv_proj.weight"));
    assert_eq!(names.len(), 1 + 3 * 6 + 2, "embedding, 6 per layer (2 norms, 4 projections), final norm, LM head");
}

#[test]
fn snapshot_phi3() {
    // heads inside the fused qkv_proj (q rows with their key/value head's k and v rows, o_proj
    // columns), MLP channels inside the fused gate_up_proj (a gate row and an up row, a
    // down_proj column); partial rotary and the window print on their ops
    snapshot("phi3");
}

#[test]
fn group_pass_source_names_no_architecture() {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/passes/src/group.rs")).unwrap();
    for word in ["llama", "chatglm", "glm", "q_proj", "k_proj", "gate_proj", "query_key_value", "mistral", "vicuna", "gemma", "qwen", "q_norm", "phi3", "qkv_proj", "gate_up_proj"] {
        let hits: Vec<&str> = src
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .filter(|l| l.to_lowercase().contains(word))
            .collect();
        assert!(hits.is_empty(), "group.rs mentions `{word}`: {hits:?}");
    }
}
