//! Pruned ONNX: each fixture export (both exporters) pruned block-wise at ratio 0.25 with
//! Taylor importance, written back as ONNX — the original graph with shrunken initializers and
//! corrected shape constants — and read again: the same logits as prunec's forward of the
//! pruned IR — and onnxruntime, the reference client (`PRUNEC_PYTHON`, else installed from
//! PyPI by `scripts/fetch-onnxruntime`), runs the written files to the same logits.

mod common;

use std::path::{Path, PathBuf};

use common::fixture;
use prunec_backends::runtime::{calibrate, cpu, CalibrationOptions, Cpu, CpuAutodiff, Executor};
use prunec_ir::Model;
use prunec_passes::prune::{apply, select, Allocate, Amount, Gqa, Mode, PruneOptions};
use prunec_passes::score::{score, Aggregation, Importance};

const FILES: [&str; 4] = ["llama-mha/model.ts.onnx", "llama-gqa/model.ts.onnx", "llama-mha/model.dynamo.onnx", "llama-gqa/model.dynamo.onnx"];

fn rows() -> Vec<Vec<u32>> {
    common::golden("llama-mha").rows("input_ids")
}

fn logits(model: &Model) -> Vec<f32> {
    let exec = Executor::<Cpu>::new(model, &cpu()).unwrap();
    exec.forward(exec.ids(&rows()).unwrap()).unwrap().into_data().into_vec().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Prunes `file` (block-wise, 25% of parameters, Taylor first order) and writes it to `dir`:
/// the pruned IR and the written file.
fn prune_and_write(file: &str, dir: &Path) -> (Model, PathBuf) {
    let mut model = prunec_frontends::load(&fixture(file)).unwrap();
    prunec_passes::run_group(&mut model).unwrap();
    let stats = calibrate::<CpuAutodiff>(&model, &cpu(), &rows(), CalibrationOptions::default(), |_, _| {}).unwrap();
    let scores = score(&model, Some(&stats), Importance::TaylorElement1, Aggregation::Sum, 0).unwrap();
    let opts = PruneOptions { amount: Amount::Ratio(0.25), mode: Mode::Block, attn_layers: None, mlp_layers: None, allocate: Allocate::Uniform, gqa: Gqa::KvHeads, round_to: 1, uniform: false };
    let sel = select(&model, &scores, &opts).unwrap();
    apply(&mut model, &sel).unwrap();
    let out = dir.join(file.replace('/', "-"));
    prunec_frontends::onnx::write_pruned(&model, &out).unwrap();
    (model, out)
}

#[test]
fn pruned_onnx_reads_back_as_the_pruned_model() {
    let dir = tempfile::tempdir().unwrap();
    for file in FILES {
        let (pruned, out) = prune_and_write(file, dir.path());
        let original = prunec_frontends::onnx::OnnxFile::open(&fixture(file)).unwrap();
        let written = prunec_frontends::onnx::OnnxFile::open(&out).unwrap();
        // the graph is kept: the same nodes, names and ops, opset and outputs
        let ops = |f: &prunec_frontends::onnx::OnnxFile| f.graph().node.iter().map(|n| (n.name.clone(), n.op_type.clone())).collect::<Vec<_>>();
        assert_eq!(ops(&original), ops(&written), "{file}");
        assert_eq!(original.opset(), written.opset());
        assert_eq!(original.graph().output.iter().map(|o| &o.name).collect::<Vec<_>>(), written.graph().output.iter().map(|o| &o.name).collect::<Vec<_>>());
        let reread = prunec_frontends::load(&out).unwrap();
        assert_eq!(reread.params.numel(), pruned.params.numel(), "{file}");
        let diff = max_diff(&logits(&pruned), &logits(&reread));
        println!("{file}: {} parameters left, written and read back: max |Δlogits| {diff:e}", pruned.params.numel());
        assert!(diff < 1e-4, "{file}: {diff}");
    }
}

#[test]
fn onnxruntime_runs_the_pruned_files() {
    let Some(python) = common::onnxruntime_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ort.py");
    std::fs::write(
        &script,
        "import sys, json, numpy as np, onnxruntime as ort\n\
         ids = np.array(json.loads(sys.argv[2]), dtype=np.int64)\n\
         s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n\
         s.run(None, {'input_ids': ids})[0].astype('<f4').tofile(sys.argv[3])\n",
    )
    .unwrap();
    let ids = serde_json::to_string(&rows()).unwrap();
    for file in FILES {
        let (pruned, out) = prune_and_write(file, dir.path());
        let raw = dir.path().join("logits.f32");
        let status = python().arg(&script).arg(&out).arg(&ids).arg(&raw).status().unwrap();
        assert!(status.success(), "{file}: onnxruntime failed");
        let bytes = std::fs::read(&raw).unwrap();
        let ort: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        let diff = max_diff(&logits(&pruned), &ort);
        println!("{file}: onnxruntime vs prunec's pruned IR: max |Δlogits| {diff:e}");
        assert!(diff < 1e-4, "{file}: {diff}");
    }
}

#[test]
fn command_line_prunes_onnx_and_refuses_what_it_cannot() {
    use common::{assert_clean_failure, prunec, texts};
    let dir = tempfile::tempdir().unwrap();
    let calib = common::golden_ids_jsonl(dir.path());
    let model = fixture("llama-gqa/model.dynamo.onnx");
    let m = model.to_str().unwrap();
    let out = dir.path().join("pruned.onnx");
    let o = out.to_str().unwrap();
    let run = prunec(&[m, "--pass", "group,score,prune", "--ratio", "0.25", "--calib", calib.to_str().unwrap(), "--calib-len", "12", "-o", o]);
    assert!(run.status.success(), "{}", texts(&run).1);
    let back = prunec(&[o, "--pass", "group"]);
    assert!(back.status.success(), "{}", texts(&back).1);
    // Taylor importance without a tokenizer nor token ids says what is missing; l2 needs none
    assert_clean_failure(&prunec(&[m, "--pass", "group,score,prune", "--ratio", "0.2"]), &["tokenizer", "input_ids", "l2"]);
    let l2 = prunec(&[m, "--pass", "group,score,prune", "--ratio", "0.2", "--importance", "l2"]);
    assert!(l2.status.success(), "{}", texts(&l2).1);
    // the input is never overwritten, even with --force
    let copy = dir.path().join("model.onnx");
    std::fs::copy(&model, &copy).unwrap();
    let c = copy.to_str().unwrap();
    assert_clean_failure(&prunec(&[c, "--pass", "group,score,prune", "--ratio", "0.2", "--importance", "l2", "-o", c, "--force"]), &["never overwritten"]);
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&model).unwrap());
    // truncated and garbage files: errors naming the file
    let bytes = std::fs::read(&model).unwrap();
    for (name, data) in [("truncated.onnx", &bytes[..bytes.len() / 3]), ("garbage.onnx", &b"not a model at all"[..])] {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        assert_clean_failure(&prunec(&[p.to_str().unwrap(), "--pass", "group"]), &[name, "ONNX"]);
    }
}

/// A model whose weights live in an external data file is written back the same way.
#[test]
fn external_data_in_external_data_out() {
    let dir = tempfile::tempdir().unwrap();
    let source = prunec_frontends::onnx::OnnxFile::open(&fixture("llama-gqa/model.ts.onnx")).unwrap();
    let input = dir.path().join("ext.onnx");
    let written = prunec_frontends::onnx::write_model(&source.model, &input, Some("ext.onnx.data")).unwrap();
    assert!(written.external_data.is_some());
    let mut model = prunec_frontends::load(&input).unwrap();
    prunec_passes::run_group(&mut model).unwrap();
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    let opts = PruneOptions { amount: Amount::Ratio(0.25), mode: Mode::Block, attn_layers: None, mlp_layers: None, allocate: Allocate::Uniform, gqa: Gqa::KvHeads, round_to: 1, uniform: false };
    let sel = select(&model, &scores, &opts).unwrap();
    apply(&mut model, &sel).unwrap();
    let out = dir.path().join("out.onnx");
    let w = prunec_frontends::onnx::write_pruned(&model, &out).unwrap();
    let data = w.external_data.expect("external data written beside the model");
    assert!(std::fs::metadata(&data).unwrap().len() > std::fs::metadata(&out).unwrap().len());
    let diff = max_diff(&logits(&model), &logits(&prunec_frontends::load(&out).unwrap()));
    assert!(diff < 1e-4, "{diff}");
}
