//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fixture of the project's own `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Runs the `prunec` binary with `args`.
pub fn prunec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prunec")).args(args).output().expect("the prunec binary runs")
}

/// Stdout and stderr of a run, as text.
pub fn texts(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Copies a fixture folder into a fresh temporary folder, files writable.
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for entry in std::fs::read_dir(fixture(name)).expect("the fixture exists") {
        let entry = entry.expect("a folder entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
    }
    dir
}

/// Asserts that a run failed cleanly: non-zero exit, an `error:` line naming every one of
/// `needles`, and no panic.
pub fn assert_clean_failure(out: &Output, needles: &[&str]) {
    let (stdout, stderr) = texts(out);
    assert!(!out.status.success(), "expected failure, got success; stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "panicked:\n{stderr}");
    assert!(stderr.contains("error:"), "no error line:\n{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr does not name `{n}`:\n{stderr}");
    }
}

/// Asserts that the command line was refused as clap refuses a bad value: exit 2, an
/// `error:` line naming every one of `needles`, and no panic.
pub fn assert_usage_error(out: &Output, needles: &[&str]) {
    let (_, stderr) = texts(out);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked") && stderr.contains("error:"), "stderr:\n{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr does not name `{n}`:\n{stderr}");
    }
}

/// SmolLM2-135M-Instruct's GGUF file: `PRUNEC_SMOLLM2_GGUF`, else fetched (once, cached) by
/// `scripts/fetch-smollm2`. `None` only when `PRUNEC_OFFLINE` is set; a failed fetch fails.
pub fn smollm2() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PRUNEC_SMOLLM2_GGUF") {
        return Some(PathBuf::from(p));
    }
    fetched("fetch-smollm2").map(PathBuf::from)
}

/// Gemma 3 270M's GGUF file (Q4_K_M): `PRUNEC_GEMMA3_GGUF`, else fetched (once, cached) by
/// `scripts/fetch-gemma3`; `None` (the test skips) when `PRUNEC_OFFLINE` is set.
pub fn gemma3() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PRUNEC_GEMMA3_GGUF") {
        return Some(PathBuf::from(p));
    }
    fetched("fetch-gemma3").map(PathBuf::from)
}

/// What `scripts/NAME` prints (a path it fetched into the cache, once); `None` when
/// `PRUNEC_OFFLINE` is set; a failed fetch fails the test.
pub fn fetched(name: &str) -> Option<String> {
    if std::env::var_os("PRUNEC_OFFLINE").is_some() {
        println!("skipped: PRUNEC_OFFLINE is set");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name);
    let out = Command::new(&script).output().unwrap_or_else(|e| panic!("scripts/{name} runs: {e}"));
    assert!(out.status.success(), "scripts/{name} failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A Python with numpy and onnxruntime, the ONNX tests' reference client: `PRUNEC_PYTHON`,
/// else `python3` with the packages `scripts/fetch-onnxruntime` installs (once, cached) on its
/// path. Each call of the returned function gives a fresh command. `None` only when
/// `PRUNEC_OFFLINE` is set.
#[allow(dead_code)]
pub fn onnxruntime_python() -> Option<impl Fn() -> Command> {
    let (program, path) = if let Some(p) = std::env::var_os("PRUNEC_PYTHON") {
        (PathBuf::from(p), None)
    } else {
        (PathBuf::from("python3"), Some(fetched("fetch-onnxruntime")?))
    };
    Some(move || {
        let mut cmd = Command::new(&program);
        if let Some(p) = &path {
            cmd.env("PYTHONPATH", p);
        }
        cmd
    })
}

/// The two golden rows of `llama-mha` as JSONL `input_ids` rows in `dir`.
pub fn golden_ids_jsonl(dir: &Path) -> PathBuf {
    let path = dir.join("ids.jsonl");
    std::fs::write(
        &path,
        "{\"input_ids\": [250,250,252,97,43,236,26,66,35,81,137,30]}\n\
         {\"input_ids\": [203,61,201,81,203,246,245,67,142,112,65,156]}\n",
    )
    .expect("write ids.jsonl");
    path
}

/// The golden input ids of fixture `name`, written as JSONL rows of `input_ids` in `dir`.
pub fn golden_ids_jsonl_of(name: &str, dir: &Path) -> PathBuf {
    let path = dir.join(format!("{name}-ids.jsonl"));
    let rows: String = golden(name).rows("input_ids").iter().map(|r| format!("{{\"input_ids\": {r:?}}}\n")).collect();
    std::fs::write(&path, rows).expect("write ids jsonl");
    path
}

/// The tensors of a golden safetensors file, by element type.
pub struct GoldenFile {
    /// F32 tensors: shape and values.
    pub f32: std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// I64 tensors: shape and values.
    pub i64: std::collections::BTreeMap<String, (Vec<usize>, Vec<i64>)>,
    /// F64 tensors: shape and values.
    pub f64: std::collections::BTreeMap<String, (Vec<usize>, Vec<f64>)>,
}

impl GoldenFile {
    /// Reads `path` (a fixture's `golden.safetensors` or another golden file).
    pub fn read(path: &Path) -> GoldenFile {
        let bytes = std::fs::read(path).expect("golden file");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("golden safetensors");
        let mut g = GoldenFile { f32: Default::default(), i64: Default::default(), f64: Default::default() };
        for (n, v) in st.tensors() {
            let shape = v.shape().to_vec();
            let d = v.data();
            match v.dtype() {
                safetensors::Dtype::F32 => {
                    g.f32.insert(n, (shape, d.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()));
                }
                safetensors::Dtype::I64 => {
                    g.i64.insert(n, (shape, d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()));
                }
                safetensors::Dtype::F64 => {
                    g.f64.insert(n, (shape, d.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()));
                }
                _ => {}
            }
        }
        g
    }

    /// F32 tensor `name`'s values.
    pub fn floats(&self, name: &str) -> &[f32] {
        &self.f32.get(name).unwrap_or_else(|| panic!("no f32 `{name}`")).1
    }

    /// I64 tensor `name`'s values.
    pub fn ints(&self, name: &str) -> &[i64] {
        &self.i64.get(name).unwrap_or_else(|| panic!("no i64 `{name}`")).1
    }

    /// I64 tensor `name` as token ids, one row per outer index (a 1-D tensor is one row).
    pub fn rows(&self, name: &str) -> Vec<Vec<u32>> {
        let (shape, v) = self.i64.get(name).unwrap_or_else(|| panic!("no i64 `{name}`"));
        let width = shape.last().copied().unwrap_or(v.len()).max(1);
        v.chunks(width).map(|r| r.iter().map(|&x| x as u32).collect()).collect()
    }
}

/// The golden file of fixture `name` (`tests/fixtures/NAME/golden.safetensors`).
pub fn golden(name: &str) -> GoldenFile {
    GoldenFile::read(&fixture(name).join("golden.safetensors"))
}

/// A byte-level BPE `tokenizer.json` with no merges (one token per byte, token id = the byte's
/// value, GPT-2's byte-to-character table), for the 256-token fixture models; written in `dir`.
pub fn byte_tokenizer(dir: &Path) -> PathBuf {
    // GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for 256 + n
    let mut extra = 0u32;
    let vocab: serde_json::Map<String, serde_json::Value> = (0u32..256)
        .map(|b| {
            let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
            let c = if printable {
                char::from_u32(b).expect("a byte is a char")
            } else {
                extra += 1;
                char::from_u32(255 + extra).expect("a char")
            };
            (c.to_string(), serde_json::Value::from(b))
        })
        .collect();
    let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": byte_level, "post_processor": null, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    });
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, json.to_string()).expect("write tokenizer.json");
    path
}

/// A file of `tests/fixtures/eval/` (the evaluation datasets' hand-made rows).
pub fn eval_fixture(rel: &str) -> PathBuf {
    fixture("eval").join(rel)
}

/// The groups of a model: per group its kind, layer, units, sub-units per unit and parameters
/// per unit — what must not depend on the file the model came in.
pub fn group_structure(mut model: prunec_ir::Model) -> Vec<String> {
    prunec_passes::run_group(&mut model).unwrap();
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

/// Every form of `tests/fixtures/onnx-forms` (one tiny LLaMA: torch's two exporters, optimum,
/// onnxruntime-genai in fp32 and 4-bit), relative to that folder.
pub const ONNX_FORMS: [&str; 9] = [
    "torch/ts17.onnx",
    "torch/ts21.onnx",
    "torch/dynamo18.onnx",
    "torch/dynamo18-opt.onnx",
    "torch/dynamo21.onnx",
    "torch/dynamo21-opt.onnx",
    "optimum/model.onnx",
    "genai-fp32/model.onnx",
    "genai-int4/model.onnx",
];
