//! ONNX files as torch's exporters write them, raised to the IR: the raised graph's logits
//! (Burn backend) equal the golden logits within 1e-4, and its dependency groups are those of
//! the same model read from its HF folder.

mod common;

use common::{fixture, group_structure};
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

/// A graph no exporter fixture holds: `Split` (a fused projection cut in three) and what no
/// rule raises (`Add`, `Mul` of activations, `Slice`s) kept as primitive IR ops.
#[test]
fn split_and_primitives_lower_and_compute() {
    use prunec_frontends::onnx::proto::{
        attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::{dimension, Dimension}, type_proto, AttributeProto,
        GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    };
    let f32s = |name: &str, dims: &[i64], v: &[f32]| TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>().into(),
        ..Default::default()
    };
    let info = |name: &str, elem: DataType, dims: &[&str]| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto {
                    dim: dims.iter().map(|d| Dimension { value: Some(dimension::Value::DimParam(d.to_string())), ..Default::default() }).collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let node = |op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>| NodeProto {
        op_type: op.into(),
        name: format!("/{op}"),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    };
    let emb: Vec<f32> = (0..16 * 12).map(|k| ((k * 7 % 23) as f32 - 11.0) / 10.0).collect();
    let head: Vec<f32> = (0..4 * 16).map(|k| ((k * 5 % 17) as f32 - 8.0) / 10.0).collect();
    let axis = AttributeProto { name: "axis".into(), r#type: AttributeType::Int as i32, i: -1, ..Default::default() };
    let sizes = TensorProto { name: "sizes".into(), dims: vec![3], data_type: DataType::Int64 as i32, raw_data: [4i64, 4, 4].iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>().into(), ..Default::default() };
    let graph = GraphProto {
        name: "split".into(),
        node: vec![
            node("Gather", &["emb", "input_ids"], &["h"], vec![]),
            node("Split", &["h", "sizes"], &["a", "b", "c"], vec![axis]),
            node("Add", &["a", "b"], &["ab"], vec![]),
            node("Mul", &["ab", "c"], &["m"], vec![]),
            node("MatMul", &["m", "head"], &["logits"], vec![]),
        ],
        initializer: vec![f32s("emb", &[16, 12], &emb), f32s("head", &[4, 16], &head), sizes],
        input: vec![info("input_ids", DataType::Int64, &["batch", "sequence"])],
        output: vec![info("logits", DataType::Float, &["batch", "sequence", "vocab"])],
        ..Default::default()
    };
    let model = ModelProto { ir_version: 8, opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }], graph: Some(graph), ..Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("split.onnx");
    prunec_frontends::onnx::write_model(&model, &path, None).unwrap();
    let ir = prunec_frontends::load(&path).unwrap();
    let exec = Executor::<Cpu>::new(&ir, &cpu()).unwrap();
    let ids = [3u32, 0, 15];
    let got: Vec<f32> = exec.forward(exec.ids(&[ids.to_vec()]).unwrap()).unwrap().into_data().into_vec().unwrap();
    for (t, &id) in ids.iter().enumerate() {
        let h = &emb[id as usize * 12..id as usize * 12 + 12];
        let m: Vec<f32> = (0..4).map(|j| (h[j] + h[4 + j]) * h[8 + j]).collect();
        for o in 0..16 {
            let want: f32 = (0..4).map(|j| m[j] * head[j * 16 + o]).sum();
            assert!((got[t * 16 + o] - want).abs() < 1e-5, "token {t} logit {o}: {} vs {want}", got[t * 16 + o]);
        }
    }
}
