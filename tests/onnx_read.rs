//! The ONNX reader on the exporter fixtures (TorchScript opset 17, dynamo opset 18): counts and
//! op histograms of `tests/fixtures/README` §3.3, weights against the HF safetensors, and the
//! writer's round trips (inline and with external data).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::fixture;
use prunec_frontends::onnx::proto::tensor_proto::DataLocation;
use prunec_frontends::onnx::proto::StringStringEntryProto;
use prunec_frontends::onnx::{write_model, OnnxFile, EXTERNAL_ALIGNMENT, EXTERNAL_THRESHOLD};
use prunec_frontends::FrontendError;

const FILES: [&str; 4] = [
    "llama-mha/model.ts.onnx",
    "llama-gqa/model.ts.onnx",
    "llama-mha/model.dynamo.onnx",
    "llama-gqa/model.dynamo.onnx",
];

fn open(name: &str) -> OnnxFile {
    OnnxFile::open(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// HF weights of a fixture folder, by name: (shape, values).
fn hf_weights(folder: &str) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(fixture(&format!("{folder}/model.safetensors"))).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

fn transpose(shape: &[usize], values: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let (rows, cols) = (shape[0], shape[1]);
    let t = (0..cols).flat_map(|c| (0..rows).map(move |r| values[r * cols + c])).collect();
    (vec![cols, rows], t)
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn fixtures_open_with_the_readme_counts() {
    // file, opset, ir_version, nodes, initializers (README §3.3)
    let table = [
        ("llama-mha/model.ts.onnx", 17, 8, 607, 39),
        ("llama-gqa/model.ts.onnx", 17, 8, 967, 39),
        ("llama-mha/model.dynamo.onnx", 18, 10, 328, 61),
        ("llama-gqa/model.dynamo.onnx", 18, 10, 355, 60),
    ];
    for (name, opset, ir, nodes, inits) in table {
        let file = open(name);
        assert_eq!(file.opset(), Some(opset), "{name}");
        assert_eq!(file.model.ir_version, ir, "{name}");
        assert_eq!(file.graph().node.len(), nodes, "{name}");
        assert_eq!(file.graph().initializer.len(), inits, "{name}");
        assert!(file.graph().node.iter().all(|n| n.domain.is_empty()), "{name}");
        assert!(file.model.functions.is_empty(), "{name}");
        let input = file.value_type("input_ids").unwrap();
        assert_eq!(input.data_type(), Some(prunec_frontends::onnx::proto::tensor_proto::DataType::Int64));
        let logits = file.value_type("logits").unwrap();
        use prunec_ir::Dim;
        assert_eq!(
            logits.shape.as_deref(),
            Some(&[Some(Dim::Sym("batch".into())), Some(Dim::Sym("sequence".into())), Some(Dim::Fixed(256))][..]),
            "{name}"
        );
    }
}

#[test]
fn op_histograms_match_the_readme() {
    // op: counts for mha ts, gqa ts, mha dynamo, gqa dynamo (README §3.3; 0 = blank).
    #[rustfmt::skip]
    let table: &[(&str, [usize; 4])] = &[
        ("Add", [29, 29, 30, 30]), ("And", [0, 0, 2, 2]), ("Cast", [46, 46, 2, 2]),
        ("Concat", [26, 42, 23, 25]), ("Constant", [201, 337, 0, 0]), ("ConstantOfShape", [1, 9, 0, 0]),
        ("Cos", [1, 1, 1, 1]), ("CumSum", [0, 0, 1, 1]), ("Div", [17, 17, 0, 0]), ("Equal", [1, 9, 2, 2]),
        ("Expand", [1, 9, 5, 13]), ("Gather", [19, 51, 1, 1]), ("GatherND", [0, 0, 4, 4]), ("IsNaN", [0, 0, 4, 4]),
        ("LessOrEqual", [1, 1, 1, 1]), ("MatMul", [37, 37, 37, 37]), ("Max", [0, 0, 2, 2]), ("Mul", [50, 66, 51, 51]),
        ("Neg", [8, 8, 8, 8]), ("Not", [0, 0, 1, 1]), ("Pow", [9, 9, 9, 9]), ("Range", [1, 1, 2, 2]),
        ("Reciprocal", [0, 0, 9, 9]), ("ReduceMean", [9, 9, 9, 9]), ("Reshape", [17, 33, 25, 33]),
        ("Shape", [19, 59, 8, 8]), ("Sigmoid", [4, 4, 4, 4]), ("Sin", [1, 1, 1, 1]), ("Slice", [16, 16, 31, 31]),
        ("Softmax", [4, 4, 4, 4]), ("Sqrt", [9, 9, 9, 9]), ("Squeeze", [0, 0, 2, 2]), ("Sub", [0, 0, 2, 2]),
        ("Transpose", [20, 20, 20, 21]), ("Unsqueeze", [58, 130, 13, 21]), ("Where", [2, 10, 5, 5]),
    ];
    for (column, name) in [
        "llama-mha/model.ts.onnx",
        "llama-gqa/model.ts.onnx",
        "llama-mha/model.dynamo.onnx",
        "llama-gqa/model.dynamo.onnx",
    ]
    .into_iter()
    .enumerate()
    {
        let file = open(name);
        let mut found: BTreeMap<&str, usize> = BTreeMap::new();
        for n in &file.graph().node {
            *found.entry(n.op_type.as_str()).or_default() += 1;
        }
        let expected: BTreeMap<&str, usize> =
            table.iter().filter(|(_, c)| c[column] > 0).map(|(op, c)| (*op, c[column])).collect();
        assert_eq!(found, expected, "{name}");
    }
}

#[test]
fn embedding_equals_the_hf_weight_bit_for_bit() {
    let cases = [
        ("llama-mha/model.ts.onnx", "m.model.embed_tokens.weight"),
        ("llama-mha/model.dynamo.onnx", "m.model.embed_tokens.weight"),
        ("llama-gqa/model.ts.onnx", "m.model.embed_tokens.weight"),
        // Tied: dynamo keeps one initializer, named after the LM head.
        ("llama-gqa/model.dynamo.onnx", "m.lm_head.weight"),
    ];
    for (name, init) in cases {
        let folder = name.split('/').next().unwrap();
        let hf = hf_weights(folder);
        let (hf_shape, hf_values) = &hf["model.embed_tokens.weight"];
        let file = open(name);
        let (shape, values) = file.value_f32(init).unwrap().unwrap_or_else(|| panic!("{name}: no `{init}`"));
        assert_eq!(&shape, hf_shape, "{name}");
        assert_eq!(bits(&values), bits(hf_values), "{name}");
    }
}

#[test]
fn matmul_weights_are_the_transposed_hf_weights() {
    for name in FILES {
        let folder = name.split('/').next().unwrap();
        let hf = hf_weights(folder);
        let file = open(name);
        let inits: Vec<(String, Vec<usize>, Vec<u32>)> = file
            .graph()
            .initializer
            .iter()
            .filter(|t| t.data_type == 1 && t.dims.len() == 2)
            .map(|t| {
                let (shape, values) = file.tensor_f32(t).unwrap();
                (t.name.clone(), shape, bits(&values))
            })
            .collect();
        let mut wanted: Vec<String> = (0..4)
            .flat_map(|i| {
                [
                    "self_attn.q_proj",
                    "self_attn.k_proj",
                    "self_attn.v_proj",
                    "self_attn.o_proj",
                    "mlp.gate_proj",
                    "mlp.up_proj",
                    "mlp.down_proj",
                ]
                .map(|p| format!("model.layers.{i}.{p}.weight"))
            })
            .collect();
        // The LM head as a `[64, 256]` MatMul weight: all but gqa dynamo (which transposes
        // the tied embedding in the graph).
        if name != "llama-gqa/model.dynamo.onnx" {
            wanted.push(if folder == "llama-mha" { "lm_head.weight" } else { "model.embed_tokens.weight" }.into());
        }
        for hf_name in &wanted {
            let (shape, values) = &hf[hf_name];
            let (t_shape, t_values) = transpose(shape, values);
            let t_bits = bits(&t_values);
            let matches: Vec<&str> =
                inits.iter().filter(|(_, s, b)| *s == t_shape && *b == t_bits).map(|(n, _, _)| n.as_str()).collect();
            assert_eq!(matches.len(), 1, "{name}: {hf_name}ᵀ matches {matches:?}");
            let prefix = if name.contains(".ts.") { "onnx::MatMul_" } else { "val_" };
            assert!(matches[0].starts_with(prefix), "{name}: {hf_name}ᵀ is `{}`", matches[0]);
        }
    }
}

#[test]
fn inline_round_trip_gives_an_equal_model() {
    let dir = tempfile::tempdir().unwrap();
    for name in FILES {
        let file = open(name);
        let out = dir.path().join("model.onnx");
        let written = write_model(&file.model, &out, None).unwrap();
        assert_eq!(written.external_data, None);
        let back = OnnxFile::open(&out).unwrap();
        assert!(back.model == file.model, "{name}: the model changed through encode/decode");
    }
}

#[test]
fn external_round_trip_reads_equal_values() {
    for name in FILES {
        let file = open(name);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("model.onnx");
        let written = write_model(&file.model, &out, Some("model.onnx.data")).unwrap();
        assert_eq!(written.external_data.as_deref(), Some(dir.path().join("model.onnx.data").as_path()));
        let back = OnnxFile::open(&out).unwrap();
        assert!(std::fs::metadata(&out).unwrap().len() < std::fs::metadata(fixture(name)).unwrap().len());
        let (orig, inits) = (&file.graph().initializer, &back.graph().initializer);
        assert_eq!(orig.len(), inits.len(), "{name}");
        let mut moved = 0;
        for (a, b) in orig.iter().zip(inits) {
            assert_eq!((&a.name, &a.dims, a.data_type), (&b.name, &b.dims, b.data_type), "{name}");
            let (ra, rb) = (file.tensor_raw(a).unwrap(), back.tensor_raw(b).unwrap());
            assert_eq!(ra, rb, "{name}: `{}`", a.name);
            if a.data_type == 1 {
                assert_eq!(bits(&file.tensor_f32(a).unwrap().1), bits(&back.tensor_f32(b).unwrap().1), "{name}");
            }
            let external = b.data_location == DataLocation::External as i32;
            assert_eq!(external, ra.bytes.len() > EXTERNAL_THRESHOLD, "{name}: `{}`", a.name);
            if external {
                moved += 1;
                let offset = b.external_data.iter().find(|e| e.key == "offset").unwrap().value.parse::<u64>().unwrap();
                assert_eq!(offset % EXTERNAL_ALIGNMENT, 0);
            }
        }
        assert!(moved >= 29, "{name}: {moved} initializers moved");
        // Loaded back in, the model is the original one.
        let mut back = back;
        back.load_external_data().unwrap();
        assert!(back.model == file.model, "{name}");
    }
}

#[test]
fn bad_external_data_names_the_file_and_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("model");
    std::fs::create_dir(&sub).unwrap();
    let out = sub.join("model.onnx");
    write_model(&open("llama-mha/model.ts.onnx").model, &out, Some("weights.bin")).unwrap();
    std::fs::write(dir.path().join("x"), vec![0u8; 1 << 20]).unwrap();
    let file = OnnxFile::open(&out).unwrap();
    let good = file.initializer("m.model.embed_tokens.weight").unwrap();
    assert_eq!(good.data_location, DataLocation::External as i32);
    assert!(file.tensor_f32(good).is_ok());
    let absolute = dir.path().join("x").display().to_string();
    let set = |key: &str, value: &str| {
        let mut t = good.clone();
        t.external_data.retain(|e| e.key != key);
        t.external_data.push(StringStringEntryProto { key: key.into(), value: value.into() });
        t
    };
    let cases = [
        (set("location", "../x"), "model.onnx", "`../x`"),
        (set("location", &absolute), "model.onnx", "inside the model's folder"),
        (set("offset", "99999999"), "weights.bin", "past the end"),
        (set("length", "99999999"), "weights.bin", "past the end"),
        (set("length", "64"), "model.onnx", "needs 65536"),
    ];
    for (t, file_named, needle) in cases {
        let e = file.tensor_f32(&t).unwrap_err();
        let text = e.to_string();
        assert!(matches!(&e, FrontendError::BadTensor { .. }), "{text}");
        assert!(text.contains("`m.model.embed_tokens.weight`"), "{text}");
        assert!(text.contains(file_named) && text.contains(needle), "{text}");
    }
    // And through the file on disk: a model whose data file is missing.
    std::fs::remove_file(sub.join("weights.bin")).unwrap();
    let file = OnnxFile::open(&out).unwrap();
    let e = file.value_f32("m.model.embed_tokens.weight").unwrap_err().to_string();
    assert!(e.contains("weights.bin") && e.contains("`m.model.embed_tokens.weight`"), "{e}");
}

#[test]
fn other_files_are_not_onnx() {
    for name in ["llama-mha/model.safetensors", "llama-mha/config.json"] {
        let e = OnnxFile::open(&fixture(name)).unwrap_err();
        assert!(matches!(&e, FrontendError::Corrupt { format: "ONNX", .. }), "{name}: {e}");
        assert!(e.to_string().contains(Path::new(name).file_name().unwrap().to_str().unwrap()), "{e}");
    }
}

#[test]
fn exporter_details() {
    // TorchScript: every Constant holds a `value` tensor with raw data (no `value_ints`...).
    let ts = open("llama-mha/model.ts.onnx");
    let constants: Vec<_> = ts.graph().node.iter().filter(|n| n.op_type == "Constant").collect();
    assert!(constants.iter().all(|n| n.attribute.len() == 1 && n.attribute[0].name == "value"));
    let reduce = ts.graph().node.iter().find(|n| n.op_type == "ReduceMean").unwrap();
    assert_eq!(ts.attr_ints(reduce, "axes").unwrap(), Some(&[-1i64][..]));
    assert_eq!(ts.attr_int(reduce, "keepdims").unwrap(), Some(1));
    // Every Constant's output reads as f32 or i64.
    for n in &constants {
        let out = &n.output[0];
        assert!(ts.value_f32(out).is_ok() || ts.value_i64(out).is_ok(), "{out}");
    }
    // dynamo: no Constant nodes (constants are initializers), value_info on every value,
    // and the exporter's metadata_props on every node.
    let dy = open("llama-mha/model.dynamo.onnx");
    assert!(dy.graph().node.iter().all(|n| n.metadata_props.iter().any(|p| p.key == "pkg.torch.onnx.stack_trace")));
    assert!(dy.graph().value_info.len() > 300);
    // The exporter's metadata names the torch module of each node (a way back to HF names)
    // and, on the graph, the ExportedProgram's signature.
    let first_matmul = dy
        .graph()
        .node
        .iter()
        .find(|n| n.op_type == "MatMul" && n.input.iter().any(|i| dy.initializer(i).is_some()))
        .unwrap();
    let scopes = first_matmul.metadata_props.iter().find(|p| p.key == "pkg.torch.onnx.name_scopes").unwrap();
    assert!(scopes.value.contains("'m.model.layers.0.self_attn.q_proj'"), "{}", scopes.value);
    let keys: Vec<&str> = dy.graph().metadata_props.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["pkg.torch.export.ExportedProgram.graph_signature", "pkg.torch.export.ExportedProgram.range_constraints"]
    );
    assert!(dy.model.metadata_props.is_empty() && ts.graph().metadata_props.is_empty());
    assert_eq!(dy.value_i64("new_ones").unwrap().unwrap(), (vec![], vec![1]));
    let reduce = dy.graph().node.iter().find(|n| n.op_type == "ReduceMean").unwrap();
    assert_eq!(dy.value_i64(&reduce.input[1]).unwrap().map(|v| v.1), Some(vec![-1]));
}
