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
