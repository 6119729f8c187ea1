//! Unit tests of the ONNX reader on small models built here (the exporter fixtures are read by
//! `tests/onnx_read.rs`).

use std::path::Path;

use super::proto::attribute_proto::AttributeType;
use super::proto::tensor_proto::{DataLocation, DataType};
use super::proto::tensor_shape_proto::{dimension, Dimension};
use super::proto::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use super::*;

fn attr(name: &str, ty: AttributeType, fill: impl FnOnce(&mut AttributeProto)) -> AttributeProto {
    let mut a = AttributeProto { name: name.into(), r#type: ty as i32, ..Default::default() };
    fill(&mut a);
    a
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute,
        ..Default::default()
    }
}

fn value_info(name: &str, elem: DataType, dims: &[Option<i64>], param: &str) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v),
                None => dimension::Value::DimParam(param.into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A small model with every storage form the reader handles.
fn small_model() -> ModelProto {
    let w: Vec<f32> = (0..16).map(|i| i as f32 * 0.25 - 2.0).collect();
    let w_raw = TensorProto {
        name: "w".into(),
        dims: vec![4, 4],
        data_type: DataType::Float as i32,
        raw_data: w.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into(),
        ..Default::default()
    };
    let shape = TensorProto {
        name: "shape".into(),
        dims: vec![2],
        data_type: DataType::Int64 as i32,
        int64_data: vec![-1, 4],
        ..Default::default()
    };
    let half_tensor = TensorProto {
        dims: vec![2],
        data_type: DataType::Float16 as i32,
        int32_data: vec![i32::from(half::f16::from_f32(1.5).to_bits()), i32::from(half::f16::from_f32(-3.0).to_bits())],
        ..Default::default()
    };
    let nodes = vec![
        node(
            "Constant",
            "c_half",
            &[],
            &["c_half"],
            vec![attr("value", AttributeType::Tensor, |a| a.t = Some(half_tensor))],
        ),
        node(
            "Constant",
            "c_ints",
            &[],
            &["c_ints"],
            vec![attr("value_ints", AttributeType::Ints, |a| a.ints = vec![0, 2, 1])],
        ),
        node(
            "Constant",
            "c_float",
            &[],
            &["c_float"],
            vec![attr("value_float", AttributeType::Float, |a| a.f = 0.125)],
        ),
        node("Constant", "c_int", &[], &["c_int"], vec![attr("value_int", AttributeType::Int, |a| a.i = -1)]),
        node("MatMul", "mm", &["x", "w"], &["h"], vec![]),
        node("Reshape", "rs", &["h", "shape"], &["r"], vec![attr("allowzero", AttributeType::Int, |a| a.i = 1)]),
        node(
            "LeakyRelu",
            "lr",
            &["r"],
            &["l"],
            vec![
                attr("alpha", AttributeType::Float, |a| a.f = 0.01),
                attr("note", AttributeType::String, |a| a.s = "hello".into()),
                attr("scales", AttributeType::Floats, |a| a.floats = vec![1.0, 2.0]),
            ],
        ),
        node("Transpose", "tr", &["l"], &["y"], vec![attr("perm", AttributeType::Ints, |a| a.ints = vec![1, 0])]),
    ];
    ModelProto {
        ir_version: 8,
        opset_import: vec![
            OperatorSetIdProto { domain: String::new(), version: 17 },
            OperatorSetIdProto { domain: "com.microsoft".into(), version: 1 },
        ],
        graph: Some(GraphProto {
            name: "small".into(),
            node: nodes,
            initializer: vec![w_raw, shape],
            input: vec![value_info("x", DataType::Float, &[None, Some(4)], "batch")],
            output: vec![value_info("y", DataType::Float, &[Some(4), None], "batch")],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn decode(bytes: Vec<u8>) -> Result<OnnxFile> {
    OnnxFile::decode(Path::new("mem/small.onnx"), Bytes::from(bytes))
}

/// Reads everything a model offers, ignoring errors: must never panic.
fn read_everything(file: &OnnxFile) {
    let g = file.graph();
    let _ = (file.opset(), format!("{file:?}"));
    for t in &g.initializer {
        let _ = (file.tensor_f32(t), file.tensor_i64(t), file.tensor_raw(t));
    }
    for n in &g.node {
        for o in &n.output {
            let _ = (file.constant(o), file.value_f32(o), file.value_i64(o), file.value_type(o));
        }
        for a in &n.attribute {
            let name = a.name.as_str();
            let _ =
                (file.attr_int(n, name), file.attr_ints(n, name), file.attr_float(n, name), file.attr_floats(n, name));
            let _ = (file.attr_string(n, name), file.attr_tensor(n, name));
            if let Some(t) = &a.t {
                let _ = (file.tensor_f32(t), file.tensor_i64(t));
            }
        }
    }
}

#[test]
fn an_open_file_is_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<OnnxFile>();
}

#[test]
fn small_model_reads() {
    let file = decode(small_model().encode_to_vec()).unwrap();
    assert_eq!(file.opset(), Some(17));
    assert_eq!(file.opset_of("ai.onnx"), Some(17));
    assert_eq!(file.opset_of("com.microsoft"), Some(1));
    assert_eq!(file.opset_of("ai.onnx.ml"), None);
    assert_eq!(file.dir(), Path::new("mem"));

    let (shape, w) = file.value_f32("w").unwrap().unwrap();
    assert_eq!(shape, [4, 4]);
    assert_eq!(w[5], 5.0 * 0.25 - 2.0);
    assert_eq!(file.value_i64("shape").unwrap().unwrap(), (vec![2], vec![-1, 4]));
    assert_eq!(file.value_f32("c_half").unwrap().unwrap(), (vec![2], Cow::Owned(vec![1.5, -3.0])));
    assert_eq!(file.value_i64("c_ints").unwrap().unwrap(), (vec![3], vec![0, 2, 1]));
    assert_eq!(file.value_f32("c_float").unwrap().unwrap(), (vec![], Cow::Owned(vec![0.125])));
    assert_eq!(file.value_i64("c_int").unwrap().unwrap(), (vec![], vec![-1]));
    assert!(matches!(file.constant("c_ints").unwrap(), Some(ConstantValue::Ints(&[0, 2, 1]))));
    assert!(file.value_f32("h").unwrap().is_none());
    assert!(file.constant("w").unwrap().is_none());
    let e = file.value_f32("c_ints").unwrap_err().to_string();
    assert!(e.contains("c_ints") && e.contains("integers"), "{e}");

    assert_eq!(
        file.value_type("x"),
        Some(&ValueType {
            elem_type: DataType::Float as i32,
            shape: Some(vec![Some(Dim::Sym("batch".into())), Some(Dim::Fixed(4))])
        })
    );
    assert_eq!(file.value_type("y").and_then(ValueType::data_type), Some(DataType::Float));
    assert!(file.value_type("h").is_none());

    let g = file.graph();
    let (rs, lr, tr) = (&g.node[5], &g.node[6], &g.node[7]);
    assert_eq!(file.attr_int(rs, "allowzero").unwrap(), Some(1));
    assert_eq!(file.attr_int(rs, "missing").unwrap(), None);
    assert_eq!(file.attr_float(lr, "alpha").unwrap(), Some(0.01));
    assert_eq!(file.attr_string(lr, "note").unwrap(), Some("hello"));
    assert_eq!(file.attr_floats(lr, "scales").unwrap(), Some(&[1.0f32, 2.0][..]));
    assert_eq!(file.attr_ints(tr, "perm").unwrap(), Some(&[1i64, 0][..]));
    assert!(file.attr_tensor(&g.node[0], "value").unwrap().is_some());
    let e = file.attr_int(lr, "alpha").unwrap_err().to_string();
    assert!(e.contains("`lr`") && e.contains("`alpha`") && e.contains("FLOAT") && e.contains("INT"), "{e}");
    assert_eq!(rs.attr("allowzero").map(|a| a.i), Some(1));
    read_everything(&file);
}

#[test]
fn float_tensors_of_other_types_are_refused_by_name() {
    let file = decode(small_model().encode_to_vec()).unwrap();
    let e = file.tensor_f32(file.initializer("shape").unwrap()).unwrap_err();
    assert!(matches!(&e, FrontendError::BadTensor { tensor, .. } if tensor == "shape"), "{e}");
    assert!(e.to_string().contains("INT64"), "{e}");
}

#[test]
fn raw_data_points_into_the_decoded_buffer() {
    let bytes = Bytes::from(small_model().encode_to_vec());
    let file = OnnxFile::decode(Path::new("small.onnx"), bytes.clone()).unwrap();
    let raw = &file.initializer("w").unwrap().raw_data;
    let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
    assert!(range.contains(&(raw.as_ptr() as usize)), "raw_data was copied");
    assert_eq!(file.path(), Path::new("small.onnx"));
    assert_eq!(file.dir(), Path::new("."));
}

#[test]
fn missing_empty_and_graphless_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = OnnxFile::open(&dir.path().join("nope.onnx")).unwrap_err();
    assert!(matches!(e, FrontendError::Io { .. }), "{e}");
    let empty = dir.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    let e = OnnxFile::open(&empty).unwrap_err();
    assert!(matches!(&e, FrontendError::Corrupt { format: "ONNX", .. }), "{e}");
    assert!(e.to_string().contains("no graph"), "{e}");
    let e = decode(b"\xff\xff\xff\xff\xff\xff".to_vec()).unwrap_err();
    assert!(matches!(&e, FrontendError::Corrupt { format: "ONNX", .. }), "{e}");
}

#[test]
fn truncations_and_garbage_never_panic() {
    let bytes = small_model().encode_to_vec();
    let mut errors = 0;
    for len in 0..bytes.len() {
        match decode(bytes[..len].to_vec()) {
            Ok(file) => read_everything(&file),
            Err(_) => errors += 1,
        }
    }
    // Most cuts fall inside a field; the few that fall between top-level fields decode.
    assert!(errors > bytes.len() * 9 / 10, "{errors} of {}", bytes.len());

    // Every byte replaced by a few values, then random bytes of many lengths.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..bytes.len() {
        for v in [0x00u8, 0xff, 0x80, 0x7f, next() as u8] {
            let mut b = bytes.clone();
            b[i] = v;
            if let Ok(file) = decode(b) {
                read_everything(&file);
            }
        }
    }
    for len in 0..600 {
        let b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Ok(file) = decode(b) {
            read_everything(&file);
        }
    }
    // Deep nesting (graph in attribute in node in graph...) stops at prost's recursion limit.
    let mut g = GraphProto::default();
    for _ in 0..200 {
        let a = AttributeProto {
            name: "body".into(),
            r#type: AttributeType::Graph as i32,
            g: Some(g),
            ..Default::default()
        };
        g = GraphProto { node: vec![node("If", "", &[], &[], vec![a])], ..Default::default() };
    }
    let deep = ModelProto { graph: Some(g), ..Default::default() };
    let e = decode(deep.encode_to_vec()).unwrap_err();
    assert!(e.to_string().contains("recursion"), "{e}");
}

#[test]
fn fixture_truncations_never_panic() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/llama-mha/model.ts.onnx");
    let bytes = std::fs::read(&path).unwrap();
    for len in (0..bytes.len()).step_by(4099) {
        if let Ok(file) = decode(bytes[..len].to_vec()) {
            read_everything(&file);
        }
    }
}

/// A model in `dir` whose one initializer `w` ([4] f32) is in the external file `data.bin`,
/// with `entries` as its external data key/values.
fn external_model(dir: &Path, entries: &[(&str, &str)]) -> std::path::PathBuf {
    let values = [1.0f32, 2.0, 3.0, 4.0];
    let mut data = vec![0u8; 8];
    data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(dir.join("data.bin"), &data).unwrap();
    let t = TensorProto {
        name: "w".into(),
        dims: vec![4],
        data_type: DataType::Float as i32,
        data_location: DataLocation::External as i32,
        external_data: entries
            .iter()
            .map(|(k, v)| StringStringEntryProto { key: k.to_string(), value: v.to_string() })
            .collect(),
        ..Default::default()
    };
    let model =
        ModelProto { graph: Some(GraphProto { initializer: vec![t], ..Default::default() }), ..Default::default() };
    let path = dir.join("m.onnx");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

#[test]
fn external_data_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = external_model(dir.path(), &[("location", "data.bin"), ("offset", "8"), ("length", "16")]);
    let file = OnnxFile::open(&path).unwrap();
    let t = file.initializer("w").unwrap();
    assert_eq!(file.tensor_f32(t).unwrap(), (vec![4], Cow::Owned(vec![1.0, 2.0, 3.0, 4.0])));
    // No length: to the end of the file.
    let path = external_model(dir.path(), &[("location", "./data.bin"), ("offset", "8")]);
    let mut file = OnnxFile::open(&path).unwrap();
    let t = file.initializer("w").unwrap();
    assert_eq!(file.tensor_f32(t).unwrap().1.as_ref(), [1.0, 2.0, 3.0, 4.0]);
    file.load_external_data().unwrap();
    let t = file.initializer("w").unwrap();
    assert_eq!(t.data_location, DataLocation::Default as i32);
    assert_eq!(file.tensor_f32(t).unwrap().1.as_ref(), [1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn bad_external_data_names_the_file_and_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("model");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(dir.path().join("x"), [0u8; 16]).unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("location", "../x")], "`../x`"),
        (&[("location", "/etc/passwd")], "`/etc/passwd`"),
        (&[("location", "a/../../x")], "`a/../../x`"),
        (&[("location", "")], "``"),
        (&[("offset", "0")], "location"),
        (&[("location", "data.bin"), ("offset", "abc")], "`abc`"),
        (&[("location", "data.bin"), ("offset", "100"), ("length", "16")], "past the end"),
        (&[("location", "data.bin"), ("offset", "8"), ("length", "24")], "past the end"),
        (&[("location", "data.bin"), ("offset", "18446744073709551615"), ("length", "16")], "past the end"),
        (&[("location", "data.bin"), ("offset", "0"), ("length", "12")], "needs 16"),
    ];
    for (entries, needle) in cases {
        let path = external_model(&sub, entries);
        let file = OnnxFile::open(&path).unwrap();
        let e = file.tensor_f32(file.initializer("w").unwrap()).unwrap_err();
        let text = e.to_string();
        assert!(matches!(&e, FrontendError::BadTensor { tensor, .. } if tensor == "w"), "{entries:?}: {text}");
        assert!(text.contains("`w`") && text.contains(needle), "{entries:?}: {text}");
        let file_named = if text.contains("past the end") { "data.bin" } else { "m.onnx" };
        assert!(text.contains(file_named), "{entries:?}: {text}");
    }
    let path = external_model(&sub, &[("location", "gone.bin")]);
    let file = OnnxFile::open(&path).unwrap();
    let e = file.tensor_f32(file.initializer("w").unwrap()).unwrap_err();
    assert!(matches!(&e, FrontendError::Missing { .. }), "{e}");
    assert!(e.to_string().contains("gone.bin") && e.to_string().contains("`w`"), "{e}");
}

#[cfg(unix)]
#[test]
fn external_data_links_out_of_the_folder_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("model");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(dir.path().join("outside.bin"), [0u8; 16]).unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside.bin"), sub.join("link.bin")).unwrap();
    let path = external_model(&sub, &[("location", "link.bin")]);
    let file = OnnxFile::open(&path).unwrap();
    let e = file.tensor_f32(file.initializer("w").unwrap()).unwrap_err().to_string();
    assert!(e.contains("out of the model's folder") && e.contains("`w`"), "{e}");
}
