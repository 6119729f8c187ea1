//! The command line: summaries, dumps, refusals.

mod common;

use common::{assert_clean_failure, fixture, prunec, texts};

#[test]
fn group_summary_of_llama_gqa() {
    let out = prunec(&[fixture("llama-gqa").to_str().unwrap(), "--pass", "group"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("9 dependency groups"), "{stdout}");
    let line = |kind: &str| stdout.lines().find(|l| l.trim_start().starts_with(kind)).unwrap_or_default().to_string();
    let words = |l: String| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(words(line("attention")), ["attention", "4", "2", "(each", "4", "sub-units)", "5120"]);
    assert_eq!(words(line("mlp")), ["mlp", "4", "176", "192"]);
    assert_eq!(words(line("hidden")), ["hidden", "1", "64", "3017"]);
    assert!(stderr.contains("[1/1] group done"), "{stderr}");
}

#[test]
fn dump_after_group_prints_the_dependency_ir() {
    let out = prunec(&[fixture("llama-mha").to_str().unwrap(), "--pass", "group", "--dump-after", "group"]);
    let (stdout, _) = texts(&out);
    assert!(out.status.success());
    assert!(stdout.contains("%5 = param<\"model.layers.0.self_attn.q_proj.weight\"> #0 : f32[64@0/16, 64@8]"), "{stdout}");
    assert!(stdout.contains("group 0: attention, block 0, 4 units, 4096 params per unit"), "{stdout}");
}

#[test]
fn unknown_pass_is_refused_with_the_valid_ones() {
    let out = prunec(&[fixture("llama-mha").to_str().unwrap(), "--pass", "group,shrink"]);
    assert_clean_failure(&out, &["unknown pass `shrink`", "valid passes: group"]);
}

#[test]
fn dump_after_a_pass_not_run_is_refused() {
    let out = prunec(&[fixture("llama-mha").to_str().unwrap(), "--pass", "group", "--dump-after", "nope"]);
    assert_clean_failure(&out, &["unknown pass `nope`"]);
}
