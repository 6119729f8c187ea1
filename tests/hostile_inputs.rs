//! Inputs a hostile or careless user gives (issue 14): each is refused before any work with a
//! message that says what is wrong and where, or warned about — never a panic, never a wrong
//! answer with exit code 0.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{assert_clean_failure, byte_tokenizer, copy_fixture, fixture, golden_ids_jsonl_of, prunec, texts};

/// Replaces `from` by `to` in the `config.json` of the model folder `dir`.
fn edit_config(dir: &Path, from: &str, to: &str) {
    let path = dir.join("config.json");
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "the fixture's config has `{from}`");
    fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

fn group(model: &Path) -> std::process::Output {
    prunec(&[model.to_str().unwrap(), "--pass", "group"])
}

/// Every configuration value the computation reads is checked (type and range), on each of the
/// three HF architectures; a wrong one is an error naming the key and the file.
#[test]
fn bad_configuration_values_are_refused() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("llama-gqa", "\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": -1", "`rms_norm_eps` = -1 must be a positive number"),
        ("llama-gqa", "\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": \"x\"", "`rms_norm_eps` must be a number, not \"x\""),
        ("llama-gqa", "\"rope_theta\": 10000.0", "\"rope_theta\": 0", "`rope_theta` = 0 must be a positive number"),
        ("llama-gqa", "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", "hidden_act `gelu` is not supported"),
        ("llama-gqa", "\"head_dim\": 8", "\"head_dim\": \"8\"", "`head_dim` must be a non-negative integer"),
        ("llama-gqa", "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": \"yes\"", "`tie_word_embeddings` must be true or false"),
        ("llama-mha", "\"attention_bias\": false", "\"attention_bias\": 0", "`attention_bias` must be true or false"),
        ("chatglm2-6b", "\"layernorm_epsilon\": 1e-05", "\"layernorm_epsilon\": -1e-05", "`layernorm_epsilon` = -0.0000"),
        ("chatglm2-6b", "\"layernorm_epsilon\": 1e-05", "\"layernorm_epsilon\": \"small\"", "`layernorm_epsilon` must be a number"),
        ("chatglm2-6b", "\"multi_query_attention\": true", "\"multi_query_attention\": 1", "`multi_query_attention` must be true or false"),
        ("chatglm-6b", "\"layernorm_epsilon\": 1e-05", "\"layernorm_epsilon\": 0", "`layernorm_epsilon` = 0 must be a positive number"),
        ("chatglm-6b", "\"position_encoding_2d\": true", "\"position_encoding_2d\": \"yes\"", "`position_encoding_2d` must be true or false"),
    ];
    for (name, from, to, needle) in cases {
        let dir = copy_fixture(name);
        edit_config(dir.path(), from, to);
        let out = group(dir.path());
        assert_clean_failure(&out, &["config.json", needle]);
    }
}

/// More layers in the file than the configuration says, or tensors it does not use: refused,
/// never dropped silently. A separate LM head with `tie_word_embeddings: true`: a warning.
#[test]
fn weights_the_configuration_leaves_out_are_never_dropped_silently() {
    for (name, from, to, needle) in [
        ("llama-mha", "\"num_hidden_layers\": 4", "\"num_hidden_layers\": 3", "layers up to 3"),
        ("chatglm2-6b", "\"num_layers\": 4", "\"num_layers\": 2", "layers up to 3"),
        ("chatglm-6b", "\"num_layers\": 4", "\"num_layers\": 3", "layers up to 3"),
        ("chatglm2-6b", "\"add_qkv_bias\": true", "\"add_qkv_bias\": false", "query_key_value.bias"),
    ] {
        let dir = copy_fixture(name);
        edit_config(dir.path(), from, to);
        assert_clean_failure(&group(dir.path()), &["config.json", needle, "dropped"]);
    }
    let dir = copy_fixture("llama-mha");
    edit_config(dir.path(), "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true");
    let out = group(dir.path());
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("warning:") && stderr.contains("`lm_head.weight` is not used"), "{stderr}");
}

/// A tensor missing from a safetensors header is named (not reported as a bad offset of its
/// neighbour).
#[test]
fn a_tensor_missing_from_the_header_is_named() {
    let dir = copy_fixture("llama-gqa");
    let path = dir.path().join("model.safetensors");
    let bytes = fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header.remove("model.layers.1.mlp.up_proj.weight").expect("the fixture has it");
    let mut text = serde_json::to_string(&header).unwrap();
    while text.len() < n {
        text.push(' ');
    }
    assert_eq!(text.len(), n, "the smaller header is padded to the same length");
    let mut out = bytes[..8].to_vec();
    out.extend(text.as_bytes());
    out.extend(&bytes[8 + n..]);
    fs::write(&path, out).unwrap();
    assert_clean_failure(&group(dir.path()), &["`model.layers.1.mlp.up_proj.weight` not found"]);
}

/// A GGUF string as the format stores it: u64 length, bytes.
fn gguf_str(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend(s);
    v
}

/// A GGUF file whose `block_count` is far beyond its tensors (a fuzz finding: 781 bytes with
/// per-layer width arrays, whose reading allocated 34 GB and aborted) is a clean error naming
/// the key.
#[test]
fn gguf_block_count_beyond_its_tensors_is_refused() {
    let path = fixture("hostile/gguf-huge-block-count.gguf");
    assert_clean_failure(&group(&path), &["gguf-huge-block-count.gguf", "block_count"]);
}

/// A GGUF metadata key holding an ANSI escape and a newline is printed escaped, on one line.
#[test]
fn gguf_keys_are_escaped_in_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.gguf");
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes()); // tensors
    bytes.extend(1u64.to_le_bytes()); // metadata entries
    bytes.extend(gguf_str(b"general.\x1b[31mred\nline"));
    bytes.extend(99u32.to_le_bytes()); // no such value type
    bytes.extend([0u8; 16]);
    fs::write(&path, bytes).unwrap();
    let out = group(&path);
    assert_clean_failure(&out, &["evil.gguf", "general.\\u{1b}[31mred\\nline", "unknown value type 99"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap();
    assert!(!stderr.contains('\x1b') && line.contains("unknown value type"), "{stderr}");
}

/// An ONNX file built from nodes `(name, op, inputs, outputs)` over an int64 input `ids` of
/// shape `[1, 4]`.
fn onnx_file(dir: &Path, name: &str, nodes: &[(&str, &str, &[&str], &[&str])]) -> PathBuf {
    onnx_graph(dir, name, &["1", "4"], &[], nodes)
}

/// An int64 initializer: name, dims, data.
type IntInit<'a> = (&'a str, &'a [i64], &'a [i64]);

/// An ONNX file built from nodes `(name, op, inputs, outputs)` over an int64 input `ids` whose
/// axes are sized by `ids_dims` (a number, or else a symbolic size), with int64 initializers. An op may
/// carry integer attributes: `Concat:axis=1`.
fn onnx_graph(dir: &Path, name: &str, ids_dims: &[&str], inits: &[IntInit], nodes: &[(&str, &str, &[&str], &[&str])]) -> PathBuf {
    use prunec_frontends::onnx::proto::{
        tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    };
    use tensor_shape_proto::dimension::Value as DimValue;
    let dim = |v: &&str| tensor_shape_proto::Dimension {
        value: Some(match v.parse() {
            Ok(n) => DimValue::DimValue(n),
            Err(_) => DimValue::DimParam(v.to_string()),
        }),
        ..Default::default()
    };
    let ids = ValueInfoProto {
        name: "ids".into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 7,
                shape: Some(TensorShapeProto { dim: ids_dims.iter().map(dim).collect() }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let node = |(n, op, i, o): &(&str, &str, &[&str], &[&str])| {
        let mut parts = op.split(':');
        let op_type = parts.next().unwrap().to_string();
        let attribute = parts
            .map(|a| {
                let (name, v) = a.split_once('=').unwrap();
                AttributeProto { name: name.into(), r#type: 2, i: v.parse().unwrap(), ..Default::default() }
            })
            .collect();
        NodeProto {
            name: n.to_string(),
            op_type,
            input: i.iter().map(|s| s.to_string()).collect(),
            output: o.iter().map(|s| s.to_string()).collect(),
            attribute,
            ..Default::default()
        }
    };
    let init = |(n, dims, data): &IntInit| TensorProto { name: n.to_string(), dims: dims.to_vec(), data_type: 7, int64_data: data.to_vec(), ..Default::default() };
    let graph = GraphProto {
        node: nodes.iter().map(node).collect(),
        input: vec![ids],
        initializer: inits.iter().map(init).collect(),
        output: vec![ValueInfoProto { name: nodes.last().unwrap().3[0].into(), ..Default::default() }],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(graph),
        ..Default::default()
    };
    let path = dir.join(name);
    prunec_frontends::onnx::write_model(&model, &path, None).unwrap();
    path
}

/// An ONNX cycle says "cycle"; an op the importer does not know is "unsupported", with the list.
#[test]
fn onnx_cycles_and_unknown_ops_are_told_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let cyclic = onnx_file(dir.path(), "cyclic.onnx", &[("a", "Add", &["ids", "c"], &["a"]), ("b", "Neg", &["a"], &["b"]), ("c", "Neg", &["b"], &["c"])]);
    assert_clean_failure(&group(&cyclic), &["cyclic.onnx", "cycle: `a` → `b` → `c` → `a`"]);
    let fancy = onnx_file(dir.path(), "fancy.onnx", &[("n1", "FancyOp", &["ids"], &["y"])]);
    let out = group(&fancy);
    assert_clean_failure(&out, &["fancy.onnx", "unsupported op `FancyOp` (node `n1`)", "supported ops: Add, And"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("corrupt"));
}

/// The byte tokenizer of the fixtures with every id moved up by 1000: another model's
/// tokenizer, whose ids are past the fixtures' 256-token vocabulary.
fn foreign_tokenizer(dir: &Path) -> PathBuf {
    let sub = dir.join("foreign");
    fs::create_dir_all(&sub).unwrap();
    let path = byte_tokenizer(&sub);
    let mut json: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    for v in json["model"]["vocab"].as_object_mut().unwrap().values_mut() {
        *v = (v.as_u64().unwrap() + 1000).into();
    }
    fs::write(&path, json.to_string()).unwrap();
    path
}

/// Token ids at or past the vocabulary are refused before running — in `eval`, calibration and
/// `generate`, on every frontend — naming the id, the vocabulary and where the ids came from.
#[test]
fn token_ids_outside_the_vocabulary_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tok = foreign_tokenizer(dir.path());
    let t = tok.to_str().unwrap();
    let text = dir.path().join("text.txt");
    fs::write(&text, "Some plain text to evaluate, long enough for a window or two. ".repeat(8)).unwrap();
    let txt = text.to_str().unwrap();
    let models = [fixture("llama-gqa"), fixture("gguf/llama-gqa.gguf"), fixture("llama-gqa/model.ts.onnx"), fixture("chatglm2-6b"), fixture("chatglm-6b")];
    for m in &models {
        let m = m.to_str().unwrap();
        let eval = prunec(&[m, "--pass", "eval", "--eval-text", txt, "--seq-len", "16", "--tokenizer", t]);
        assert_clean_failure(&eval, &["token id 10", "vocabulary", "256 tokens", "--tokenizer", "foreign"]);
        let calib = prunec(&[m, "--pass", "group,score", "--calib", txt, "--calib-len", "16", "--tokenizer", t]);
        assert_clean_failure(&calib, &["token id 1", "256 tokens", "--calib", "--tokenizer"]);
        let generate = prunec(&["generate", m, "--prompt", "hello", "--max-new-tokens", "2", "--tokenizer", t]);
        assert_clean_failure(&generate, &["token id 1104", "256 tokens", "the prompt", "--tokenizer"]);
    }
    // ids given as they are: the file that holds them is named
    let ids = dir.path().join("ids.jsonl");
    fs::write(&ids, "{\"input_ids\": [1, 2, 3, 300, 5, 6, 7, 8, 9, 10, 11, 12]}\n".repeat(3)).unwrap();
    let i = ids.to_str().unwrap();
    let m = fixture("llama-gqa");
    let m = m.to_str().unwrap();
    assert_clean_failure(&prunec(&[m, "--pass", "eval", "--eval-text", i, "--seq-len", "12"]), &["token id 300 (row 0, position 3)", "`input_ids` of --eval-text", "ids.jsonl"]);
    assert_clean_failure(&prunec(&[m, "--pass", "group,score", "--calib", i, "--calib-samples", "2"]), &["token id 300", "`input_ids` of", "ids.jsonl"]);
}

/// The runtime's own guard: no gather ever sees an id outside its table, whatever the caller.
#[test]
fn the_runtime_refuses_out_of_range_ids_instead_of_panicking() {
    use prunec_backends::burn::prelude::{Int, Tensor, TensorData};
    use prunec_backends::runtime::{cpu, Cpu, Executor};
    let model = prunec_frontends::load(&fixture("llama-gqa")).unwrap();
    let exec = Executor::<Cpu>::new(&model, &cpu()).unwrap();
    assert_eq!(exec.vocab_size(), Some(256));
    let err = exec.ids(&[vec![1, 2, 256]]).unwrap_err().to_string();
    assert!(err.contains("token id 256") && err.contains("256 tokens") && err.contains("row 0, position 2"), "{err}");
    let raw = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(vec![1i64, 9999, 3], [1, 3]), &cpu());
    let err = exec.forward(raw).unwrap_err().to_string();
    assert!(err.contains("token id 9999"), "{err}");
    let negative = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(vec![1i64, -4, 3], [1, 3]), &cpu());
    assert!(exec.forward(negative).unwrap_err().to_string().contains("token id -4"));
}

/// Sizes are checked against what is available before allocating or writing.
#[test]
fn runaway_sizes_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let m = fixture("llama-gqa");
    let m = m.to_str().unwrap();
    let out = prunec(&[m, "--pass", "group,score", "--calib-samples", "1000000000"]);
    assert_clean_failure(&out, &["--calib-samples 1000000000", "of memory, more than the"]);
    let o = dir.path().join("huge");
    let out = prunec(&["synth", "--preset", "7b", "--layers", "1000000", "-o", o.to_str().unwrap()]);
    assert_clean_failure(&out, &["synth with 1000000 layers", "TiB to write, but only"]);
    assert!(fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing written");
    let out = prunec(&["bench", m, "--batch", "100000", "--seq-len", "100000", "--iters", "1"]);
    assert_clean_failure(&out, &["--batch 100000 × --seq-len 100000", "of memory"]);
}

/// Numbers out of range are refused with the range; negative numbers reach the checks.
#[test]
fn out_of_range_numbers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ids = golden_ids_jsonl_of("llama-gqa", dir.path());
    let ids = ids.to_str().unwrap();
    let m = fixture("llama-gqa");
    let m = m.to_str().unwrap();
    let eval = |extra: &[&str]| {
        let mut a = vec![m, "--pass", "eval", "--eval-text", ids, "--seq-len", "12"];
        a.extend_from_slice(extra);
        prunec(&a)
    };
    assert_clean_failure(&prunec(&[m, "--pass", "group,score,prune", "--ratio", "-0.1"]), &["ratio -0.1 is out of range"]);
    assert_clean_failure(&prunec(&[m, "--pass", "group,score,prune", "--ratio", "nan"]), &["ratio NaN is out of range"]);
    assert_clean_failure(&prunec(&[m, "--pass", "eval", "--eval-text", ids, "--seq-len", "-1"]), &["--seq-len -1: a count cannot be negative"]);
    assert_clean_failure(&eval(&["--eval-batch", "0"]), &["--eval-batch 0"]);
    assert_clean_failure(&eval(&["--limit", "0"]), &["--limit 0"]);
    assert_clean_failure(&prunec(&[m, "--pass", "group,score", "--calib-len", "1"]), &["--calib-len 1"]);
    for t in ["nan", "-1", "inf"] {
        assert_clean_failure(&prunec(&["generate", m, "--prompt", "hi", "--temperature", t]), &["--temperature", "≥ 0"]);
    }
    assert_clean_failure(&prunec(&["generate", m, "--prompt", "hi", "--top-p", "0"]), &["--top-p 0", "(0, 1]"]);
}

/// A weight holding NaN: the loss is not finite, so `eval` and calibration fail, naming the
/// first node whose output is not finite — never a NaN perplexity with exit code 0.
#[test]
fn a_non_finite_loss_is_an_error_naming_where_it_appeared() {
    let dir = copy_fixture("llama-gqa");
    let path = dir.path().join("model.safetensors");
    let mut bytes = fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let start = header["model.layers.2.mlp.down_proj.weight"]["data_offsets"][0].as_u64().unwrap() as usize + 8 + n;
    bytes[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    fs::write(&path, bytes).unwrap();
    let ids = golden_ids_jsonl_of("llama-gqa", dir.path());
    let m = dir.path().to_str().unwrap();
    let out = prunec(&[m, "--pass", "eval", "--eval-text", ids.to_str().unwrap(), "--seq-len", "12"]);
    assert_clean_failure(&out, &["perplexity windows", "NaN, not a finite number", "`model.layers.2.mlp.down_proj.weight`"]);
    let out = prunec(&[m, "--pass", "group,score", "--calib", ids.to_str().unwrap(), "--calib-samples", "2"]);
    assert_clean_failure(&out, &["calibration loss", "NaN", "`model.layers.2.mlp.down_proj.weight`"]);
}

/// Files the fuzz targets found that make other crates panic (tokenizers on a malformed
/// `tokenizer.json`, parquet on a footer with a negative column length): a clean error naming
/// the file, never a crash (the panic is caught at the reader's boundary).
#[test]
fn files_that_crash_other_crates_readers_are_errors() {
    let m = fixture("llama-gqa");
    let m = m.to_str().unwrap();
    let tok = fixture("hostile/tokenizer-panics-tokenizers.json");
    let out = prunec(&[m, "--pass", "eval", "--eval-text", fixture("smollm2/public.txt").to_str().unwrap(), "--tokenizer", tok.to_str().unwrap()]);
    assert_clean_failure(&out, &["tokenizer-panics-tokenizers.json", "tokenizer.json", "its reader failed on it"]);
    let data = fixture("hostile/negative-column-length.parquet");
    let out = prunec(&[m, "--pass", "eval", "--eval-text", data.to_str().unwrap()]);
    assert_clean_failure(&out, &["negative-column-length.parquet", "corrupt Parquet file", "its reader failed on it"]);
}

/// ONNX graphs the fuzz target found that crashed prunec's own importer: the mask probe
/// evaluating a `Concat` on an axis outside its inputs, the folder concatenating operands of
/// different ranks, a `Slice` on an axis past the rank (every axis is now checked); and a
/// `Reshape` whose target sizes overflow when multiplied (2^33 × 2^33: sizes are now multiplied
/// with overflow checks); and constant int64 arithmetic that overflows (2^62 × 4: it wraps, as in
/// ONNX). Read without a crash.
#[test]
fn onnx_graphs_with_axes_out_of_range_do_not_crash_the_importer() {
    for name in ["hostile/probe-concat-axis.onnx", "hostile/concat-ranks.onnx", "hostile/slice-axis.onnx", "hostile/reshape-overflow.onnx", "hostile/int-overflow.onnx"] {
        let path = fixture(name);
        let result = std::panic::catch_unwind(|| prunec_frontends::load(&path).map(|_| ()));
        assert!(result.is_ok(), "{name}: the importer panicked");
        let out = prunec(&[path.to_str().unwrap(), "--pass", "group"]);
        assert!(!texts(&out).1.contains("panicked"), "{name}: {}", texts(&out).1);
    }
}

/// ONNX graphs on which the importer's size arithmetic panicked (found by mutating the ONNX
/// fixtures): reshaping a rank-0 runtime value to `[1]` (the head-split check indexed axis
/// `rank - 1`), inferring a `-1` next to sizes whose product overflows, and symbolic sizes whose
/// coefficients overflow an `i64` (`seq · (2^63 - 1) · 2` computed by the graph, a concatenation of
/// two values the graph sized `(2^63 - 1)·seq`). Each is refused with a message naming the node, or read, never a panic.
#[test]
fn onnx_size_arithmetic_that_overflows_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (max, scalar, one): (&[i64], &[i64], &[i64]) = (&[i64::MAX], &[], &[1]);
    let cases = [
        (
            onnx_graph(
                dir.path(),
                "reshape-scalar.onnx",
                &["1", "4"],
                &[("zero", scalar, &[0]), ("to", one, &[1])],
                &[("g0", "Gather", &["ids", "zero"], &["row"]), ("g1", "Gather", &["row", "zero"], &["x"]), ("r", "Reshape", &["x", "to"], &["y"])],
            ),
            None,
        ),
        (
            onnx_graph(
                dir.path(),
                "reshape-infer-overflow.onnx",
                &["1", "4"],
                &[("to", &[3], &[1 << 33, 1 << 33, -1])],
                &[("r", "Reshape", &["ids", "to"], &["y"])],
            ),
            Some("node `r` (Reshape)"),
        ),
        (
            onnx_graph(
                dir.path(),
                "symbolic-mul-overflow.onnx",
                &["1", "seq"],
                &[("big", one, max), ("two", one, &[2]), ("one", one, &[1])],
                &[
                    ("shape", "Shape", &["ids"], &["s"]),
                    ("slice", "Gather", &["s", "one"], &["n"]),
                    ("m1", "Mul", &["n", "big"], &["nb"]),
                    ("m2", "Mul", &["nb", "two"], &["nbb"]),
                    ("r", "Reshape", &["ids", "nbb"], &["y"]),
                ],
            ),
            Some("node `m2` (Mul)"),
        ),
        (
            onnx_graph(
                dir.path(),
                "symbolic-concat-overflow.onnx",
                &["1", "seq"],
                &[("big", one, max), ("one", one, &[1])],
                &[
                    ("shape", "Shape", &["ids"], &["s"]),
                    ("slice", "Gather", &["s", "one"], &["n"]),
                    ("mul", "Mul", &["n", "big"], &["nb"]),
                    ("to", "Concat:axis=0", &["one", "nb"], &["t"]),
                    ("x", "Reshape", &["ids", "t"], &["wide"]),
                    ("cat", "Concat:axis=1", &["wide", "wide"], &["y"]),
                ],
            ),
            Some("node `cat` (Concat)"),
        ),
    ];
    for (path, node) in &cases {
        let name = path.file_name().unwrap().to_string_lossy();
        let result = std::panic::catch_unwind(|| prunec_frontends::load(path).map(|_| ()));
        assert!(result.is_ok(), "{name}: the importer panicked");
        let out = prunec(&[path.to_str().unwrap(), "--pass", "group"]);
        let stderr = texts(&out).1;
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{name}: {stderr}");
        if let Some(node) = node {
            assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
            assert!(stderr.contains(&*name) && stderr.contains(node) && stderr.contains("overflows"), "{name}: {stderr}");
        }
    }
}

/// ONNX graphs whose constants would take more memory than any machine has (found by the onnx
/// fuzz target: a `ConstantOfShape` of 2^57 elements; a `Range` of 2^62 built the same way): the
/// importer refuses them, naming the node, instead of aborting on a failed allocation.
#[test]
fn onnx_constants_too_large_to_fold_are_refused() {
    for (name, node) in [("hostile/constant-of-shape-huge.onnx", "node `cos` (ConstantOfShape)"), ("hostile/range-huge.onnx", "node `range` (Range)")] {
        let path = fixture(name);
        let out = prunec(&[path.to_str().unwrap(), "--pass", "group"]);
        let stderr = texts(&out).1;
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(node) && stderr.contains("too large to fold"), "{name}: {stderr}");
    }
}

/// Parquet files on which the parquet crate (60.1.0) spun, each found by the parquet fuzz target
/// or made after what it found, each refused as corrupt, naming the file, within a hang guard
/// of 10 s (they take milliseconds):
/// - `parquet-spins.parquet` (4 KB, 3 rows declared): the crate reads page headers for ever;
///   the reader's reads are bounded;
/// - `parquet-bool-lists.parquet` (581 bytes): its footer declares lists of 2^31 booleans in
///   fields the crate does not know, which it skipped without reading a byte per element
///   (27 s under the fuzz target); `parquet-nested-bool-lists.parquet` (538 bytes) nests such
///   lists (over 30 s); `parquet-page-bool-list.parquet` (a real file whose first page header
///   gains such a field, 6 s): the vendored crate (vendor/parquet/PRUNEC.md) reads a byte per
///   element, as the protocol encodes them. `parquet-page-skip-past-end.parquet` (4.5 KB, a
///   fuzz timeout under load: 1.5 s alone) declares a page header's list of binaries past the
///   end of the file, each skipped without a byte left; the vendored crate stops at the end.
///   `parquet-huge-dictionary.parquet` (1.7 KB) declares a dictionary page of billions of
///   values: the crate allocated 65 GB for them and aborted; the vendored one refuses it.
///   `parquet-page-declares-gigabytes.parquet` (4 KB) has compressed pages whose headers declare
///   gigabytes uncompressed: the crate zeroed a buffer that size for each read (26 s in all);
///   the vendored one refuses a size its codec cannot expand the page's bytes to.
#[test]
fn parquet_files_that_made_the_reader_spin_are_refused_at_once() {
    let m = fixture("llama-gqa");
    for name in ["parquet-spins", "parquet-bool-lists", "parquet-nested-bool-lists", "parquet-page-bool-list", "parquet-page-skip-past-end", "parquet-huge-dictionary", "parquet-page-declares-gigabytes"] {
        let data = fixture(&format!("hostile/{name}.parquet"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_prunec"))
            .args([m.to_str().unwrap(), "--pass", "eval", "--eval-text", data.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > std::time::Duration::from_secs(10) {
                let _ = child.kill();
                panic!("{name}: still reading after 10 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        assert_clean_failure(&out, &[&format!("{name}.parquet"), "corrupt Parquet file"]);
        for task in prunec_frontends::tasks::Task::ALL {
            assert!(task.load(&data, Some(64)).is_err(), "{name}: {task:?}");
        }
    }
}
