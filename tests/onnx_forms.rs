//! ONNX as people have it (`tests/fixtures/onnx-forms`, made by `scripts/make-onnx-forms tiny`
//! from one tiny random LLaMA with grouped-query attention): torch.onnx's TorchScript exporter
//! (opsets 17 and 21) and dynamo exporter (opsets 18 and 21, optimizer off and on), optimum's
//! `text-generation-with-past` export (attention mask, positions and a key/value cache as
//! inputs) and onnxruntime-genai's builder (contrib ops; fp32 and 4-bit weights). Each form is
//! read, compared with onnxruntime on the same file (relative 1e-4 of the largest logit), grouped
//! as the HF folder it came from, pruned and written back; onnxruntime runs the written file to
//! prunec's logits of the pruned model; the written graph keeps its interface, with the cache's
//! key/value heads pruned layer by layer.

mod common;

use std::path::{Path, PathBuf};

use common::{fixture, group_structure};
use prunec_backends::runtime::{calibrate, cpu, CalibrationOptions, Cpu, CpuAutodiff, Executor};
use prunec_frontends::onnx::OnnxFile;
use prunec_ir::{Model, Op};
use prunec_passes::prune::{apply, select, Allocate, Amount, Gqa, Mode, PruneOptions};
use prunec_passes::score::{score, Aggregation, Importance};

fn form(rel: &str) -> PathBuf {
    fixture("onnx-forms").join(rel)
}

/// Two rows of token ids of the tiny model's vocabulary (128).
fn rows() -> Vec<Vec<u32>> {
    vec![vec![5, 77, 23, 101, 9, 64, 31, 2, 118, 40], vec![90, 3, 57, 12, 126, 45, 88, 19, 70, 33]]
}

fn load(path: &Path) -> Model {
    prunec_frontends::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn logits(model: &Model, rows: &[Vec<u32>]) -> Vec<f32> {
    let exec = Executor::<Cpu>::new(model, &cpu()).unwrap();
    exec.forward(exec.ids(rows).unwrap()).unwrap().into_data().into_vec().unwrap()
}

/// `max |a − b| / max |b|`.
fn relative(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(f32::MIN_POSITIVE);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}

/// Prunes `model` block-wise (a quarter of the parameters, Taylor first order on `rows`).
fn prune(model: &mut Model) {
    prunec_passes::run_group(model).unwrap();
    let stats = calibrate::<CpuAutodiff>(model, &cpu(), &rows(), CalibrationOptions::default(), |_, _| {}).unwrap();
    let scores = score(model, Some(&stats), Importance::TaylorElement1, Aggregation::Sum, 0).unwrap();
    let opts = PruneOptions { amount: Amount::Ratio(0.25), mode: Mode::Block, attn_layers: None, mlp_layers: None, allocate: Allocate::Uniform, gqa: Gqa::KvHeads, round_to: 1, uniform: false };
    let sel = select(model, &scores, &opts).unwrap();
    apply(model, &sel).unwrap();
}

/// Runs `scripts/ort_run.py` on `jobs` (JSON), in one Python process.
fn onnxruntime(python: &dyn Fn() -> std::process::Command, jobs: &serde_json::Value, dir: &Path) {
    let file = dir.join("jobs.json");
    std::fs::write(&file, jobs.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ort_run.py");
    let out = python().arg(script).arg(&file).output().unwrap();
    assert!(out.status.success(), "onnxruntime failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// The key/value heads of each attention layer of `model`, in layer order.
fn kv_heads(model: &Model) -> Vec<usize> {
    let mut out = Vec::new();
    for id in model.graph.topological_order().unwrap() {
        if !matches!(model.graph.node(id).unwrap().op, Op::Attention(_)) {
            continue;
        }
        // the keys, before any repetition of shared heads: [batch, seq, heads, head_dim]
        let k = model.graph.inputs(id)[1];
        let heads = match &model.graph.node(k.node).unwrap().op {
            Op::RepeatHeads { copies } => copies.len(),
            _ => model.graph.value_type(k).unwrap().shape.dims()[2].fixed().unwrap(),
        };
        out.push(heads);
    }
    out
}

#[test]
fn every_form_computes_onnxruntimes_logits_and_groups_as_its_hf_folder() {
    let hf = group_structure(load(&form("hf")));
    let python = common::onnxruntime_python();
    let dir = tempfile::tempdir().unwrap();
    let mut jobs = Vec::new();
    let mut ours = Vec::new();
    for rel in common::ONNX_FORMS {
        let model = load(&form(rel));
        assert_eq!(group_structure(model.clone()), hf, "{rel}: groups");
        let out = dir.path().join(rel.replace('/', "-") + ".f32");
        // 4-bit weights: onnxruntime computing in f32, as the file's weights say
        let file = if rel.contains("int4") { exact_copy(&form(rel), &dir.path().join("exact")) } else { form(rel) };
        jobs.push(serde_json::json!({"kind": "logits", "model": file, "ids": rows(), "out": out}));
        ours.push((rel, logits(&model, &rows()), out));
    }
    let Some(python) = python else { return };
    onnxruntime(&python, &serde_json::Value::Array(jobs), dir.path());
    for (rel, got, out) in ours {
        let d = relative(&got, &read_f32(&out));
        println!("{rel}: prunec vs onnxruntime, max |Δlogits| / max |logit| = {d:e}");
        assert!(d < 1e-4, "{rel}: {d}");
    }
}

/// A copy of `path` (in `dir`) whose `MatMulNBits` nodes compute in f32 (`accuracy_level` 0):
/// onnxruntime's default for these files (4) quantizes the activations to int8 first, which
/// the file's weights do not say.
fn exact_copy(path: &Path, dir: &Path) -> PathBuf {
    let mut file = OnnxFile::open(path).unwrap();
    file.load_external_data().unwrap();
    for n in file.model.graph.as_mut().unwrap().node.iter_mut().filter(|n| n.op_type == "MatMulNBits") {
        for a in n.attribute.iter_mut().filter(|a| a.name == "accuracy_level") {
            a.i = 0;
        }
    }
    let out = dir.join("model.onnx");
    std::fs::create_dir_all(dir).unwrap();
    prunec_frontends::onnx::write_model(&file.model, &out, Some("model.onnx.data")).unwrap();
    let config = path.with_file_name("genai_config.json");
    if config.exists() {
        std::fs::copy(config, dir.join("genai_config.json")).unwrap();
    }
    out
}

/// The declared shape of graph input or output `name` of `file` (numbers; -1 for a symbol).
fn declared(file: &OnnxFile, name: &str) -> Vec<i64> {
    let t = file.value_type(name).unwrap_or_else(|| panic!("no value `{name}`"));
    t.shape.as_ref().unwrap().iter().map(|d| if let Some(prunec_ir::Dim::Fixed(n)) = d { *n as i64 } else { -1 }).collect()
}

/// Each form pruned (a quarter of the parameters, key/value heads with their query heads) and
/// written back: the same nodes, names, inputs and outputs; a cache's declared key/value heads
/// those of its pruned layer; genai_config.json with the pruned head counts; onnxruntime runs the
/// written file to prunec's logits (4-bit weights: to prunec's logits of the written file, whose
/// requantized blocks differ from the pruned model's by a quantization step).
#[test]
fn every_form_pruned_and_written_runs_in_onnxruntime() {
    let Some(python) = common::onnxruntime_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut jobs = Vec::new();
    let mut checks = Vec::new();
    for rel in common::ONNX_FORMS {
        let mut model = load(&form(rel));
        prune(&mut model);
        let folder = dir.path().join(rel.replace(['/', '.'], "-"));
        std::fs::create_dir_all(&folder).unwrap();
        let out = folder.join(Path::new(rel).file_name().unwrap());
        prunec_frontends::onnx::write_pruned(&model, &out).unwrap();
        let (original, written) = (OnnxFile::open(&form(rel)).unwrap(), OnnxFile::open(&out).unwrap());
        let ops = |f: &OnnxFile| f.graph().node.iter().map(|n| (n.name.clone(), n.op_type.clone())).collect::<Vec<_>>();
        assert_eq!(ops(&original), ops(&written), "{rel}: nodes");
        let names = |v: &[prunec_frontends::onnx::proto::ValueInfoProto]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&original.graph().input), names(&written.graph().input), "{rel}: inputs");
        assert_eq!(names(&original.graph().output), names(&written.graph().output), "{rel}: outputs");
        // the cache of layer N has that layer's key/value heads, inputs and outputs alike
        let heads = kv_heads(&model);
        assert!(heads.iter().any(|&h| h < 2), "{rel}: no key/value head pruned ({heads:?})");
        for (layer, &h) in heads.iter().enumerate() {
            for name in [format!("past_key_values.{layer}.key"), format!("past_key_values.{layer}.value"), format!("present.{layer}.key"), format!("present.{layer}.value")] {
                if original.value_type(&name).is_some() {
                    assert_eq!(declared(&written, &name)[1], h as i64, "{rel}: {name}");
                }
            }
        }
        if rel.starts_with("genai") {
            let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(folder.join("genai_config.json")).unwrap()).unwrap();
            let decoder = &config["model"]["decoder"];
            assert_eq!(decoder["num_key_value_heads"], heads[0], "{rel}");
            assert_eq!(decoder["num_attention_heads"], 2 * heads[0], "{rel}");
            assert!(folder.join("tokenizer.json").exists(), "{rel}: the tokenizer is copied");
        }
        if rel.contains("int4") {
            // pruned rows (q, k, v, gate, up) are whole rows of 4-bit blocks, copied
            let bytes = |f: &OnnxFile, n: &str| f.tensor_raw(f.initializer(n).unwrap()).unwrap().bytes.to_vec();
            let name = "model.layers.0.attn.qkv_proj.MatMul.weight_Q4";
            let (before, after) = (bytes(&original, name), bytes(&written, name));
            let row = before.len() / 128; // [N = (4 + 2 + 2)·16 rows, blocks, 16 bytes]
            assert!(after.len() < before.len() && after.chunks(row).all(|r| before.chunks(row).any(|o| o == r)), "{rel}: rows copied");
        }
        let reread = load(&out);
        assert_eq!(reread.params.numel(), model.params.numel(), "{rel}");
        let (ours, reread_logits) = (logits(&model, &rows()), logits(&reread, &rows()));
        let d = relative(&reread_logits, &ours);
        println!("{rel}: {} parameters left; the written file read back vs the pruned model: {d:e}", model.params.numel());
        let exact = if rel.contains("int4") {
            assert!(d < 0.05, "{rel}: requantized blocks moved the logits by {d}");
            exact_copy(&out, &folder.join("exact"))
        } else {
            assert!(d < 1e-5, "{rel}: {d}");
            out.clone()
        };
        let file = folder.join("ort.f32");
        jobs.push(serde_json::json!({"kind": "logits", "model": exact, "ids": rows(), "out": file}));
        checks.push((rel, reread_logits, file));
    }
    onnxruntime(&python, &serde_json::Value::Array(jobs), dir.path());
    for (rel, ours, file) in checks {
        let d = relative(&ours, &read_f32(&file));
        println!("{rel}: pruned, onnxruntime vs prunec: max |Δlogits| / max |logit| = {d:e}");
        assert!(d < 1e-4, "{rel}: {d}");
    }
}

/// optimum's form pruned: onnxruntime generating greedily with the pruned cache gives
/// prunec's tokens; a row fed through the pruned cache a token at a time gives prunec's logits
/// of the whole row; rows left-padded with their attention mask give the logits of the rows
/// alone.
#[test]
fn optimum_form_pruned_generates_and_pads_as_prunec() {
    let Some(python) = common::onnxruntime_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut model = load(&form("optimum/model.onnx"));
    prune(&mut model);
    let out = dir.path().join("model.onnx");
    prunec_frontends::onnx::write_pruned(&model, &out).unwrap();
    let prompt = vec![5u32, 77, 23, 101, 9];
    let exec = Executor::<Cpu>::new(&model, &cpu()).unwrap();
    let sampling = prunec_backends::runtime::generate::Sampling { max_new_tokens: 12, ..Default::default() };
    let ours = prunec_backends::runtime::generate::generate(&exec, &prompt, &sampling, None, |_| {}).unwrap();
    let short = vec![90u32, 3, 57];
    let padded_rows = vec![rows()[0].clone(), short.clone()];
    let (gen_file, pad_file, cached_file) = (dir.path().join("gen.json"), dir.path().join("pad.f32"), dir.path().join("cached.f32"));
    let tokens = rows()[1].clone();
    let jobs = serde_json::json!([
        {"kind": "generate", "model": out, "prompt": prompt, "new_tokens": 12, "out": gen_file},
        {"kind": "padded", "model": out, "rows": padded_rows, "out": pad_file},
        {"kind": "cached", "model": out, "tokens": tokens, "prefill": 4, "out": cached_file},
    ]);
    onnxruntime(&python, &jobs, dir.path());
    let theirs: Vec<u32> = serde_json::from_str(&std::fs::read_to_string(&gen_file).unwrap()).unwrap();
    println!("prunec: {ours:?}\nonnxruntime with the pruned cache: {theirs:?}");
    assert_eq!(ours, theirs);
    // a row fed through the pruned cache a token at a time: the logits of the whole row
    let whole = logits(&model, std::slice::from_ref(&tokens));
    let vocab = whole.len() / tokens.len();
    let d = relative(&read_f32(&cached_file), &whole[3 * vocab..]);
    println!("the row through onnxruntime's pruned cache, a token at a time, vs prunec on the whole row: {d:e}");
    assert!(d < 1e-4, "{d}");
    let mut alone = logits(&model, &[rows()[0].clone()]);
    alone.extend(logits(&model, &[short]));
    let d = relative(&read_f32(&pad_file), &alone);
    println!("left-padded rows with their mask vs each row alone: {d:e}");
    assert!(d < 1e-4, "{d}");
}

/// Builders for hand-made graphs.
mod graph {
    pub use prunec_frontends::onnx::proto::{
        attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::{dimension, Dimension}, type_proto, AttributeProto,
        GraphProto, ModelProto, NodeProto, OperatorSetIdProto, SparseTensorProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    };

    pub fn floats(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: DataType::Float as i32,
            raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>().into(),
            ..Default::default()
        }
    }

    pub fn ints(name: &str, dims: &[i64], v: &[i64]) -> TensorProto {
        TensorProto { name: name.into(), dims: dims.to_vec(), data_type: DataType::Int64 as i32, int64_data: v.to_vec(), ..Default::default() }
    }

    pub fn info(name: &str, elem: DataType, dims: &[&str]) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: elem as i32,
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|d| Dimension {
                                value: Some(match d.parse::<i64>() {
                                    Ok(n) => dimension::Value::DimValue(n),
                                    Err(_) => dimension::Value::DimParam(d.to_string()),
                                }),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: name.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        }
    }

    pub fn attr(name: &str, ty: AttributeType, fill: impl FnOnce(&mut AttributeProto)) -> AttributeProto {
        let mut a = AttributeProto { name: name.into(), r#type: ty as i32, ..Default::default() };
        fill(&mut a);
        a
    }

    /// A model of `nodes` reading `input_ids` [batch, sequence] and giving `logits`.
    pub fn model(nodes: Vec<NodeProto>, initializer: Vec<TensorProto>) -> ModelProto {
        let graph = GraphProto {
            name: "hand-made".into(),
            node: nodes,
            initializer,
            input: vec![info("input_ids", DataType::Int64, &["batch", "sequence"])],
            output: vec![info("logits", DataType::Float, &["batch", "sequence", "vocab"])],
            ..Default::default()
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 18 }, OperatorSetIdProto { domain: "com.microsoft".into(), version: 1 }],
            graph: Some(graph),
            ..Default::default()
        }
    }
}

/// Constants of every attribute kind (`value`, `value_float(s)`, `value_int(s)`,
/// `value_string(s)` unused, `sparse_value` of floats and of integers), an `If` whose condition
/// is a constant, `CastLike`, a `Cast` chain through double and `Identity`: folded, the graph
/// computes what they say.
#[test]
fn constants_of_every_kind_if_and_casts_fold() {
    use graph::*;
    let emb: Vec<f32> = (0..8 * 4).map(|k| ((k * 7 % 11) as f32 - 5.0) / 4.0).collect();
    let head: Vec<f32> = (0..4 * 6).map(|k| ((k * 5 % 13) as f32 - 6.0) / 5.0).collect();
    let constant = |out: &str, a: AttributeProto| node("Constant", &format!("/const/{out}"), &[], &[out], vec![a]);
    // a float scale and a reshape target [0, 0, 4], both stored sparse
    let sparse_scale = SparseTensorProto { values: Some(floats("sv", &[1], &[0.5])), indices: Some(ints("si", &[1], &[0])), dims: vec![1] };
    let sparse_shape = SparseTensorProto { values: Some(ints("tv", &[1], &[4])), indices: Some(ints("ti", &[1], &[2])), dims: vec![3] };
    let branch = |op: &str, out: &str| GraphProto {
        name: format!("{op}-branch"),
        node: vec![node(op, &format!("/{op}"), &["x2"], &[out], vec![])],
        output: vec![info(out, DataType::Float, &["batch", "sequence", "4"])],
        ..Default::default()
    };
    let nodes = vec![
        constant("two", attr("value_float", AttributeType::Float, |a| a.f = 2.0)),
        constant("minus", attr("value_floats", AttributeType::Floats, |a| a.floats = vec![-1.0])),
        constant("axis", attr("value_int", AttributeType::Int, |a| a.i = -1)),
        constant("axes", attr("value_ints", AttributeType::Ints, |a| a.ints = vec![-1])),
        constant("name", attr("value_string", AttributeType::String, |a| a.s = b"unused".to_vec().into())),
        constant("names", attr("value_strings", AttributeType::Strings, |a| a.strings = vec![b"a".to_vec().into()])),
        constant("half", attr("sparse_value", AttributeType::SparseTensor, |a| a.sparse_tensor = Some(sparse_scale))),
        constant("target", attr("sparse_value", AttributeType::SparseTensor, |a| a.sparse_tensor = Some(sparse_shape))),
        constant("yes", attr("value", AttributeType::Tensor, |a| a.t = Some(TensorProto { data_type: DataType::Bool as i32, int32_data: vec![1], ..Default::default() }))),
        node("Gather", "/embed", &["emb", "input_ids"], &["x"], vec![]),
        node("Mul", "/mul2", &["x", "two"], &["x1"], vec![]),
        node("Mul", "/sign", &["x1", "minus"], &["x1s"], vec![]),
        node("Mul", "/half", &["x1s", "half"], &["x1h"], vec![]),
        node("Reshape", "/same-shape", &["x1h", "target"], &["x2"], vec![]),
        node(
            "If",
            "/if",
            &["yes"],
            &["y"],
            vec![
                attr("then_branch", AttributeType::Graph, |a| a.g = Some(branch("Identity", "then_out"))),
                attr("else_branch", AttributeType::Graph, |a| a.g = Some(branch("Neg", "else_out"))),
            ],
        ),
        node("CastLike", "/castlike", &["y", "x"], &["y1"], vec![]),
        node("Cast", "/to-double", &["y1"], &["y2"], vec![attr("to", AttributeType::Int, |a| a.i = DataType::Double as i64)]),
        node("Cast", "/to-float", &["y2"], &["y3"], vec![attr("to", AttributeType::Int, |a| a.i = DataType::Float as i64)]),
        node("Unsqueeze", "/unsqueeze", &["y3", "axes"], &["y4"], vec![]),
        node("Squeeze", "/squeeze", &["y4", "axes"], &["y5"], vec![]),
        node("Softmax", "/softmax", &["y5"], &["p"], vec![attr("axis", AttributeType::Int, |a| a.i = -1)]),
        node("MatMul", "/head", &["p", "head"], &["logits"], vec![]),
    ];
    let model = model(nodes, vec![floats("emb", &[8, 4], &emb), floats("head", &[4, 6], &head)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kinds.onnx");
    prunec_frontends::onnx::write_model(&model, &path, None).unwrap();
    let ir = load(&path);
    let ids = [3u32, 0, 5]; // below the 6 logits: ids are also targets
    let got = logits(&ir, &[ids.to_vec()]);
    for (t, &id) in ids.iter().enumerate() {
        let x: Vec<f32> = (0..4).map(|j| -(emb[id as usize * 4 + j] * 2.0 * 0.5)).collect();
        let m = x.iter().fold(f32::MIN, |a, &b| a.max(b));
        let e: Vec<f32> = x.iter().map(|v| (v - m).exp()).collect();
        let p: Vec<f32> = e.iter().map(|v| v / e.iter().sum::<f32>()).collect();
        for o in 0..6 {
            let want: f32 = (0..4).map(|j| p[j] * head[j * 6 + o]).sum();
            assert!((got[t * 6 + o] - want).abs() < 1e-5, "token {t} logit {o}: {} vs {want}", got[t * 6 + o]);
        }
    }
    // an If whose condition is computed at run time is refused, naming the node
    let mut runtime = model.clone();
    let g = runtime.graph.as_mut().unwrap();
    let k = g.node.iter().position(|n| n.name == "/if").unwrap();
    g.node[k].input[0] = "x".into();
    prunec_frontends::onnx::write_model(&runtime, &path, None).unwrap();
    let e = prunec_frontends::load(&path).unwrap_err().to_string();
    assert!(e.contains("/if") && e.contains("condition"), "{e}");
}

/// An op the importer does not read: the error names the op, the node and the supported ops,
/// for ONNX's own domain and for onnxruntime's.
#[test]
fn unknown_ops_are_named_with_the_supported_ones() {
    use graph::*;
    let dir = tempfile::tempdir().unwrap();
    for (domain, op) in [("", "DynamicQuantizeLinear"), ("com.microsoft", "FusedMatMul")] {
        let mut n = node(op, "/mystery/node_7", &["x"], &["logits"], vec![]);
        n.domain = domain.into();
        let model = model(vec![node("Gather", "/embed", &["emb", "input_ids"], &["x"], vec![]), n], vec![floats("emb", &[8, 4], &[0.5; 32])]);
        let path = dir.path().join(format!("{op}.onnx"));
        prunec_frontends::onnx::write_model(&model, &path, None).unwrap();
        let e = prunec_frontends::load(&path).unwrap_err();
        assert!(matches!(e, prunec_frontends::FrontendError::UnsupportedOp { .. }), "{e:?}");
        let text = e.to_string();
        for needle in [op, "/mystery/node_7", "MatMul", "com.microsoft.GroupQueryAttention", "unsupported op"] {
            assert!(text.contains(needle), "`{needle}` missing from: {text}");
        }
        assert!(!text.contains("corrupt"), "{text}");
    }
}

/// prunec's 4-bit quantizer (what requantizes a cut block) gives the bytes and scales that
/// onnxruntime's quantizer wrote into the genai int4 fixture from the HF folder's weights.
#[test]
fn requantization_is_onnxruntimes_quantizer() {
    use prunec_frontends::onnx::quant;
    let bytes = std::fs::read(form("hf/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let file = OnnxFile::open(&form("genai-int4/model.onnx")).unwrap();
    for (hf, onnx) in [("model.layers.0.self_attn.o_proj.weight", "model.layers.0.attn.o_proj.MatMul"), ("model.layers.1.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.MatMul")] {
        let view = st.tensor(hf).unwrap();
        let (rows, cols) = (view.shape()[0], view.shape()[1]);
        let w: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        let ours = quant::quantize(&w, rows, cols, 32, false);
        let data = file.tensor_raw(file.initializer(&format!("{onnx}.weight_Q4")).unwrap()).unwrap();
        let (_, scales) = file.value_f32(&format!("{onnx}.weight_scales")).unwrap().unwrap();
        assert_eq!(ours.scales, scales.as_ref(), "{hf}: scales");
        assert_eq!(ours.data, data.bytes.as_ref(), "{hf}: packed data");
    }
}

/// onnxruntime's `RotaryEmbedding` (the separate rotary op of onnxruntime-genai's builder for
/// some models and execution providers) on `[batch, seq, heads·head_dim]`, half-split and
/// interleaved: prunec computes what onnxruntime computes.
#[test]
fn rotary_embedding_op_computes_as_onnxruntime() {
    use graph::*;
    let Some(python) = common::onnxruntime_python() else { return };
    let (vocab, heads, head_dim, positions) = (16usize, 2usize, 8usize, 32usize);
    let hidden = heads * head_dim;
    let emb: Vec<f32> = (0..vocab * hidden).map(|k| ((k * 7 % 23) as f32 - 11.0) / 10.0).collect();
    let head: Vec<f32> = (0..hidden * vocab).map(|k| ((k * 5 % 17) as f32 - 8.0) / 10.0).collect();
    let inv: Vec<f64> = (0..head_dim / 2).map(|i| 10000f64.powf(-2.0 * i as f64 / head_dim as f64)).collect();
    let table = |f: fn(f64) -> f64| -> Vec<f32> { (0..positions).flat_map(|t| inv.iter().map(move |&w| f(t as f64 * w) as f32)).collect() };
    let dir = tempfile::tempdir().unwrap();
    let ids = vec![vec![3u32, 0, 15, 7, 9], vec![1, 2, 3, 4, 5]];
    let mut jobs = Vec::new();
    let mut ours = Vec::new();
    for interleaved in [0, 1] {
        let mut rope = node(
            "RotaryEmbedding",
            "/rope",
            &["x", "position_ids", "cos_cache", "sin_cache"],
            &["r"],
            vec![
                attr("interleaved", AttributeType::Int, |a| a.i = interleaved),
                attr("num_heads", AttributeType::Int, |a| a.i = heads as i64),
            ],
        );
        rope.domain = "com.microsoft".into();
        let mut m = model(
            vec![node("Gather", "/embed", &["emb", "input_ids"], &["x"], vec![]), rope, node("MatMul", "/head", &["r", "head"], &["logits"], vec![])],
            vec![
                floats("emb", &[vocab as i64, hidden as i64], &emb),
                floats("head", &[hidden as i64, vocab as i64], &head),
                floats("cos_cache", &[positions as i64, head_dim as i64 / 2], &table(f64::cos)),
                floats("sin_cache", &[positions as i64, head_dim as i64 / 2], &table(f64::sin)),
            ],
        );
        m.graph.as_mut().unwrap().input.push(info("position_ids", DataType::Int64, &["batch", "sequence"]));
        let path = dir.path().join(format!("rope{interleaved}.onnx"));
        prunec_frontends::onnx::write_model(&m, &path, None).unwrap();
        let out = dir.path().join(format!("rope{interleaved}.f32"));
        jobs.push(serde_json::json!({"kind": "logits", "model": path, "ids": ids, "out": out}));
        ours.push((interleaved, logits(&load(&path), &ids), out));
    }
    onnxruntime(&python, &serde_json::Value::Array(jobs), dir.path());
    let (a, b) = (read_f32(&ours[0].2), read_f32(&ours[1].2));
    assert!(relative(&a, &b) > 1e-2, "the two layouts differ");
    for (interleaved, got, out) in ours {
        let d = relative(&got, &read_f32(&out));
        println!("RotaryEmbedding, interleaved = {interleaved}: prunec vs onnxruntime {d:e}");
        assert!(d < 1e-5, "interleaved = {interleaved}: {d}");
    }
}

/// The full-size check (`scripts/onnx-forms-check`, not CI): every form of SmolLM2-135M in
/// `$PRUNEC_ONNX_FORMS` (made by `scripts/make-onnx-forms full`, beside the HF folder
/// `smol-f32` it was made from) is read and compared with onnxruntime on the fixtures' three
/// prompts, grouped as the HF folder, pruned by the command line (`--pass group,score,prune
/// --ratio 0.2`) and run pruned by onnxruntime; optimum's form generates 32 tokens greedily in
/// onnxruntime with the pruned cache, compared with prunec's generation; onnxruntime-genai
/// (`$PRUNEC_GENAI_PYTHON`) loads the pruned genai folders and generates.
#[test]
#[ignore = "full size: run by scripts/onnx-forms-check"]
fn full_size_smollm2_forms() {
    let Some(root) = std::env::var_os("PRUNEC_ONNX_FORMS").map(PathBuf::from) else { panic!("PRUNEC_ONNX_FORMS names the forms' folder") };
    let python = common::onnxruntime_python().expect("onnxruntime");
    let golden = common::GoldenFile::read(&fixture("smollm2/golden.safetensors"));
    let prompts: Vec<Vec<u32>> = (0..3).map(|i| golden.rows(&format!("input_ids.{i}")).concat()).collect();
    let hf = group_structure(load(&root.join("smol-f32")));
    let tokenizer = root.join("smol-f32/tokenizer.json");
    let out_root = root.join("pruned");
    let mut report = Vec::new();
    let forms = ["torch/ts17.onnx", "torch/ts21.onnx", "torch/dynamo18.onnx", "torch/dynamo18-opt.onnx", "torch/dynamo21.onnx", "torch/dynamo21-opt.onnx", "optimum/model.onnx", "genai-fp32/model.onnx", "genai-int4/model.onnx"];
    let only = std::env::var("PRUNEC_ONNX_FORMS_ONLY").ok();
    for rel in forms.iter().filter(|r| only.as_deref().is_none_or(|o| r.contains(o))) {
        let path = root.join("forms").join(rel);
        let t = std::time::Instant::now();
        let model = load(&path);
        let read_s = t.elapsed().as_secs_f64();
        let same_groups = group_structure(model.clone()) == hf;
        let work = out_root.join(rel.replace(['/', '.'], "-"));
        std::fs::create_dir_all(&work).unwrap();
        let exact = if rel.contains("int4") { exact_copy(&path, &work.join("exact")) } else { path.clone() };
        // each prompt alone (they differ in length)
        let ours: Vec<Vec<f32>> = prompts.iter().map(|p| logits(&model, std::slice::from_ref(p))).collect();
        drop(model);
        let pruned = work.join(Path::new(rel).file_name().unwrap());
        let t = std::time::Instant::now();
        let run = common::prunec(&[path.to_str().unwrap(), "--pass", "group,score,prune", "--ratio", "0.2", "--tokenizer", tokenizer.to_str().unwrap(), "-o", pruned.to_str().unwrap(), "--force"]);
        assert!(run.status.success(), "{rel}: {}", common::texts(&run).1);
        let prune_s = t.elapsed().as_secs_f64();
        let pruned_exact = if rel.contains("int4") { exact_copy(&pruned, &work.join("pruned-exact")) } else { pruned.clone() };
        let pruned_model = load(&pruned);
        let theirs_pruned: Vec<Vec<f32>> = prompts.iter().map(|p| logits(&pruned_model, std::slice::from_ref(p))).collect();
        let mut jobs = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            jobs.push(serde_json::json!({"kind": "logits", "model": exact, "ids": [p], "out": work.join(format!("orig{i}.f32"))}));
            jobs.push(serde_json::json!({"kind": "logits", "model": pruned_exact, "ids": [p], "out": work.join(format!("pruned{i}.f32"))}));
        }
        let generation = rel.starts_with("optimum");
        if generation {
            jobs.push(serde_json::json!({"kind": "generate", "model": pruned, "prompt": prompts[1], "new_tokens": 32, "out": work.join("generate.json")}));
        }
        onnxruntime(&python, &serde_json::Value::Array(jobs), &work);
        let worst = |name: &str, ours: &[Vec<f32>]| -> f32 {
            ours.iter().enumerate().map(|(i, o)| relative(o, &read_f32(&work.join(format!("{name}{i}.f32"))))).fold(0.0, f32::max)
        };
        let (d_orig, d_pruned) = (worst("orig", &ours), worst("pruned", &theirs_pruned));
        for (i, (o, p)) in ours.iter().zip(&theirs_pruned).enumerate() {
            let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
            std::fs::write(work.join(format!("prunec-orig{i}.f32")), bytes(o)).unwrap();
            std::fs::write(work.join(format!("prunec-pruned{i}.f32")), bytes(p)).unwrap();
        }
        let mut line = format!(
            "{rel}: read in {read_s:.1} s; groups as the HF folder: {same_groups}; prunec vs onnxruntime {d_orig:.2e}; pruned (-o in {prune_s:.1} s) to {} parameters, onnxruntime vs prunec {d_pruned:.2e}",
            pruned_model.params.numel()
        );
        if generation {
            let exec = Executor::<Cpu>::new(&pruned_model, &cpu()).unwrap();
            let sampling = prunec_backends::runtime::generate::Sampling { max_new_tokens: 32, ..Default::default() };
            let ours = prunec_backends::runtime::generate::generate(&exec, &prompts[1], &sampling, None, |_| {}).unwrap();
            let theirs: Vec<u32> = serde_json::from_str(&std::fs::read_to_string(work.join("generate.json")).unwrap()).unwrap();
            line += &format!("; 32 greedy tokens with the pruned cache equal prunec's: {} ({ours:?})", ours == theirs);
            assert_eq!(ours, theirs, "{rel}: generation");
        }
        if rel.starts_with("genai") {
            if let Some(genai) = std::env::var_os("PRUNEC_GENAI_PYTHON") {
                let file = work.join("genai.json");
                let jobs = serde_json::json!([{"kind": "genai", "folder": work, "prompt": prompts[1], "new_tokens": 16, "out": file}]);
                let python = move || std::process::Command::new(&genai);
                onnxruntime(&python, &jobs, &work);
                line += &format!("; onnxruntime_genai loads the pruned folder and generates {}", std::fs::read_to_string(&file).unwrap());
            }
        }
        println!("{line}");
        report.push(line);
        assert!(same_groups, "{rel}: groups");
        assert!(d_orig < 1e-4 && d_pruned < 1e-4, "{rel}: {d_orig} {d_pruned}");
    }
    std::fs::write(out_root.join("report.txt"), report.join("\n") + "\n").unwrap();
}
