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

#[test]
fn dynamo_exports_compute_the_golden_logits() {
    check_logits("llama-mha", "model.dynamo.onnx");
    check_logits("llama-gqa", "model.dynamo.onnx");
}


/// The groups of a model: per group its kind, layer, units, sub-units per unit and parameters
/// per unit — what must not depend on the file the model came in.
fn group_structure(mut model: Model) -> Vec<String> {
    prunec_passes::Pass::Group.run(&mut model).unwrap();
    model
        .groups
        .unwrap()
        .iter()
        .map(|g| {
            let subs: std::collections::BTreeSet<usize> = g.units.iter().map(|u| u.sub_units.len()).collect();
            format!("{} {:?} units {} sub-units per unit {:?} params/unit {:?}", g.kind, g.block, g.units.len(), subs, g.params_per_unit())
        })
        .collect()
}

#[test]
fn both_exporters_group_as_the_hf_folders() {
    for name in ["llama-mha", "llama-gqa"] {
        let hf = group_structure(load(name));
        for flavour in ["ts", "dynamo"] {
            let onnx = group_structure(load(&format!("{name}/model.{flavour}.onnx")));
            assert_eq!(onnx, hf, "{name} {flavour}");
            insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
                insta::assert_snapshot!(format!("{name}.{flavour}-onnx.groups"), onnx.join("\n"));
            });
        }
    }
}
