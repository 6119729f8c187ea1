//! Fast recovery: the laws of `lora` (the model is unchanged until trained) and `merge` (the
//! merged model computes what the adapted one does, with the graph as before `lora`), a
//! training run that overfits two sequences, the whole pipeline through the command line
//! (PEFT adapters, checkpoints, the training curve in the report), and its refusals.

mod common;

use common::{assert_clean_failure, fixture, prunec, texts};
use prunec_backends::runtime::{cpu, Cpu, CpuAutodiff, Sample, TrainOptions};
use prunec_ir::{Model, Param};
use prunec_passes::lora::{adapters, add_adapters, merge, LoraOptions};

fn rows() -> Vec<Vec<u32>> {
    common::golden("llama-mha").rows("input_ids")
}

fn logits(model: &Model) -> Vec<f32> {
    let exec = prunec_backends::runtime::Executor::<Cpu>::new(model, &cpu()).unwrap();
    exec.forward(exec.ids(&rows()).unwrap()).unwrap().into_data().into_vec().unwrap()
}

/// LLM-Pruner's LoRA options on the modules `model`'s architecture adapts.
fn defaults(model: &Model) -> LoraOptions {
    LoraOptions::targeting(&prunec_frontends::arch::lora_targets(model))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Before training, adapters change no logit (B is zero: `y + 0` is `y`, bit for bit).
#[test]
fn lora_leaves_the_logits_unchanged() {
    for (name, adapters_per_layer) in [("llama-gqa", 7), ("llama-mha", 7), ("chatglm2-6b", 4), ("chatglm-6b", 4), ("phi3", 4)] {
        let mut model = prunec_frontends::load(&fixture(name)).unwrap();
        let before = logits(&model);
        let layers = model.graph.node_ids().iter().filter_map(|&id| model.graph.node(id).unwrap().block).max().unwrap() as usize + 1;
        let opts = defaults(&model);
        let report = add_adapters(&mut model, &opts).unwrap();
        prunec_ir::verify(&model).unwrap();
        assert_eq!(report.adapters, adapters_per_layer * layers, "{name}");
        assert_eq!(logits(&model), before, "{name}: adapters changed the logits");
    }
}

/// With B non-zero, the merged model's logits are the adapted model's (within 1e-5 of the
/// largest logit; measured 2e-6), and the merged graph prints exactly as the graph before `lora`.
#[test]
fn merge_computes_what_the_adapters_did() {
    for name in ["llama-gqa", "llama-mha", "chatglm-6b", "phi3"] {
        let mut model = prunec_frontends::load(&fixture(name)).unwrap();
        let printed = prunec_ir::print(&model).unwrap();
        let before = logits(&model);
        let opts = LoraOptions { seed: 7, ..defaults(&model) };
        add_adapters(&mut model, &opts).unwrap();
        let mut rng = prunec_ir::rng::SplitMix64::new(11);
        for a in adapters(&model) {
            let shape = model.params.get(&a.b).unwrap().shape.clone();
            let values = (0..shape.iter().product::<usize>()).map(|_| (rng.next_f64() as f32 - 0.5) * 0.04).collect();
            model.params.insert(a.b.clone(), Param::owned(shape, values).unwrap());
        }
        let adapted = logits(&model);
        assert!(max_abs_diff(&adapted, &before) > 1e-3, "{name}: B should change the logits");
        merge(&mut model).unwrap();
        prunec_ir::verify(&model).unwrap();
        assert_eq!(prunec_ir::print(&model).unwrap(), printed, "{name}: merge did not restore the graph");
        let diff = max_abs_diff(&logits(&model), &adapted);
        let scale = adapted.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        println!("{name}: merged vs adapted max |Δlogits| = {diff:e} (largest logit {scale}, adapters moved them {:e})", max_abs_diff(&adapted, &before));
        // f32 summation order differs ((W + sBA)x against Wx + sB(Ax)): 1e-5 of the largest logit
        assert!(diff < 1e-5 * scale, "{name}: {diff}");
    }
}

/// Thirty steps on two sequences: the adapters alone overfit them.
#[test]
fn training_overfits_two_sequences() {
    let mut model = prunec_frontends::load(&fixture("llama-mha")).unwrap();
    let opts = LoraOptions { dropout: 0.0, ..defaults(&model) };
    add_adapters(&mut model, &opts).unwrap();
    let base: Vec<(String, Vec<f32>)> = model
        .params
        .iter()
        .filter(|(n, _)| !n.contains("lora_"))
        .map(|(n, _)| (n.clone(), model.params.read_f32(n).unwrap().to_vec()))
        .collect();
    let trainable: Vec<String> = adapters(&model).iter().flat_map(|a| [a.a.clone(), a.b.clone()]).collect();
    let rows = rows();
    let targets: Vec<Vec<bool>> = rows.iter().map(|r| (0..r.len()).map(|t| t > 0).collect()).collect();
    let samples: Vec<Sample<'_>> = rows.iter().zip(&targets).map(|(ids, t)| Sample { ids, targets: t }).collect();
    let opts = TrainOptions { steps: 30, batch_size: 2, micro_batch_size: 1, lr: 1e-2, eval_every: 10, ..TrainOptions::default() };
    let out = prunec_backends::runtime::train::<CpuAutodiff>(&mut model, &cpu(), &trainable, &samples, &samples, None, &opts, &mut ())
        .unwrap();
    let (first, last) = (out.step_losses[0], *out.step_losses.last().unwrap());
    println!("loss {first} → {last}; curve {:?}", out.curve);
    assert!(last < 0.5 * first, "loss {first} → {last}");
    assert_eq!(out.curve.iter().map(|p| p.step).collect::<Vec<_>>(), [0, 10, 20, 30]);
    assert!(out.curve[3].val_loss.unwrap() < out.curve[0].val_loss.unwrap());
    // the base weights stay frozen; the adapters were written back
    for (n, v) in base {
        assert_eq!(model.params.read_f32(&n).unwrap().as_ref(), &v, "{n} changed");
    }
    assert!(model.params.read_f32(&trainable[1]).unwrap().iter().any(|v| *v != 0.0));
}

/// The issue's pipeline on a tiny fixture: prune, add adapters, train three steps on a
/// text, merge, evaluate; the report holds the curve, `-o` a folder that reads back and
/// computes the same perplexity, `--adapter-out` and the checkpoints PEFT's files.
#[test]
fn prune_lora_recover_merge_eval_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let ids = common::golden_ids_jsonl(dir.path());
    let ids = ids.to_str().unwrap();
    let (out_dir, report, adapter, ckpt) =
        (dir.path().join("out"), dir.path().join("r.json"), dir.path().join("adapter"), dir.path().join("ckpt"));
    let model = fixture("llama-mha");
    let run = prunec(&[
        model.to_str().unwrap(),
        "--pass",
        "group,score,prune,lora,recover,merge,eval",
        "--importance",
        "l2",
        "--ratio",
        "0.2",
        "--train-text",
        ids,
        "--cutoff-len",
        "6",
        "--val-set-size",
        "1",
        "--batch-size",
        "2",
        "--micro-batch-size",
        "1",
        "--steps",
        "3",
        "--lr",
        "1e-3",
        "--eval-every",
        "1",
        "--eval-text",
        ids,
        "--seq-len",
        "12",
        "--checkpoint-dir",
        ckpt.to_str().unwrap(),
        "--save-every",
        "2",
        "--adapter-out",
        adapter.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    let (stdout, stderr) = texts(&run);
    assert!(run.status.success(), "{stderr}");
    assert!(stdout.contains("merged 28 adapters"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let names: Vec<&str> = json["passes"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["group", "score", "prune", "lora", "recover", "merge", "eval"]);
    let training = &json["training"];
    assert_eq!((training["steps"].as_u64(), training["samples"]["train"].as_u64(), training["samples"]["validation"].as_u64()), (Some(3), Some(3), Some(1)));
    let curve = training["curve"].as_array().unwrap();
    assert_eq!(curve.iter().map(|p| p["step"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3]);
    for p in &curve[1..] {
        for key in ["train_loss", "val_loss", "perplexity", "tokens_per_s", "lr"] {
            assert!(p[key].as_f64().is_some_and(f64::is_finite), "{key} in {p}");
        }
    }
    // merge leaves the pruned parameter count; the written folder computes the same perplexity
    assert!(json["params"]["after"].as_u64().unwrap() < json["params"]["before"].as_u64().unwrap());
    let ppl = json["passes"][6]["perplexity"].as_f64().unwrap();
    let again = dir.path().join("again.json");
    let reread = prunec(&[out_dir.to_str().unwrap(), "--pass", "eval", "--eval-text", ids, "--seq-len", "12", "--report", again.to_str().unwrap()]);
    assert!(reread.status.success(), "{}", texts(&reread).1);
    let again: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&again).unwrap()).unwrap();
    let reread_ppl = again["perplexity"]["before"].as_f64().unwrap();
    assert!((reread_ppl / ppl - 1.0).abs() < 1e-5, "{reread_ppl} vs {ppl}");
    // PEFT's files: keys as PEFT names them on the HF model, shapes [r, in] and [out, r]
    for folder in [adapter.clone(), ckpt.join("checkpoint-2"), ckpt.join("checkpoint-3")] {
        let bytes = std::fs::read(folder.join("adapter_model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.names().len(), 2 * 28, "{}", folder.display());
        let a = st.tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").unwrap();
        assert_eq!(a.shape(), [8, 64]);
        let b = st.tensor("base_model.model.model.layers.3.mlp.down_proj.lora_B.weight").unwrap();
        assert_eq!(b.shape(), [64, 8]);
        let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(folder.join("adapter_config.json")).unwrap()).unwrap();
        assert_eq!((cfg["peft_type"].as_str(), cfg["task_type"].as_str(), cfg["r"].as_u64()), (Some("LORA"), Some("CAUSAL_LM"), Some(8)));
        assert_eq!((cfg["lora_alpha"].as_f64(), cfg["lora_dropout"].as_f64(), cfg["bias"].as_str()), (Some(16.0), Some(0.05), Some("none")));
        assert_eq!(cfg["target_modules"].as_array().unwrap().len(), 7);
    }
    assert!(!ckpt.join("checkpoint-1").exists());
}

/// Refusals: clear errors naming the file or the row, exit code 1, no panic.
#[test]
fn bad_training_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("llama-mha");
    let m = model.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![m, "--pass", "lora,recover"];
        args.extend_from_slice(extra);
        prunec(&args)
    };
    let missing = dir.path().join("nope.json");
    assert_clean_failure(&run(&["--train-data", missing.to_str().unwrap()]), &["nope.json"]);
    let corrupt = dir.path().join("corrupt.json");
    std::fs::write(&corrupt, "[{\"instruction\": \"a\", \"output\": \"b\"},").unwrap();
    assert_clean_failure(&run(&["--train-data", corrupt.to_str().unwrap()]), &["corrupt.json", "corrupt"]);
    let no_output = dir.path().join("rows.jsonl");
    std::fs::write(&no_output, "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"c\", \"input\": \"d\"}\n").unwrap();
    assert_clean_failure(&run(&["--train-data", no_output.to_str().unwrap()]), &["rows.jsonl", "line 2", "`output`"]);
    assert_clean_failure(&run(&["--train-data", no_output.to_str().unwrap(), "--lora-r", "0"]), &["--lora-r 0"]);
    assert_clean_failure(&run(&[]), &["--train-data", "--train-text"]);
    let ids = common::golden_ids_jsonl(dir.path());
    assert_clean_failure(&prunec(&[m, "--pass", "recover", "--train-text", ids.to_str().unwrap()]), &["`lora` before it"]);
    assert_clean_failure(&prunec(&[m, "--pass", "merge"]), &["no LoRA adapters"]);
    // pruning after `lora` is refused
    assert_clean_failure(&prunec(&[m, "--pass", "lora,group"]), &["prune before `lora`"]);
    // a text shorter than one window
    assert_clean_failure(&run(&["--train-text", ids.to_str().unwrap(), "--cutoff-len", "100"]), &["ids.jsonl", "--cutoff-len 100"]);
}

/// PEFT loads the adapters on the base model `-o` writes (without `merge`) and computes what
/// prunec's merged model computes. Needs Python with torch, transformers and peft
/// (`PRUNEC_PEFT_PYTHON`, default /work/venv-torch/bin/python).
#[test]
#[ignore = "needs python with torch, transformers and peft"]
fn peft_loads_the_adapters() {
    let python = std::env::var("PRUNEC_PEFT_PYTHON").unwrap_or_else(|_| "/work/venv-torch/bin/python".into());
    let dir = tempfile::tempdir().unwrap();
    let ids = common::golden_ids_jsonl(dir.path());
    let model = fixture("llama-mha");
    let common_args = |pass: &'static str, out: &std::path::Path| -> Vec<String> {
        [model.to_str().unwrap(), "--pass", pass, "--train-text", ids.to_str().unwrap(), "--cutoff-len", "12", "--val-set-size", "0",
         "--steps", "3", "--lr", "1e-2", "--lora-dropout", "0", "-o", out.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let (base, merged, adapter) = (dir.path().join("base"), dir.path().join("merged"), dir.path().join("adapter"));
    let mut a = common_args("lora,recover", &base);
    a.extend(["--adapter-out".to_string(), adapter.to_str().unwrap().to_string()]);
    let out = prunec(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", texts(&out).1);
    let b = common_args("lora,recover,merge", &merged);
    let out = prunec(&b.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", texts(&out).1);
    let script = r#"
import sys, torch
from transformers import AutoModelForCausalLM
from peft import PeftModel
base, adapter, merged = sys.argv[1:4]
ids = torch.tensor([[250,250,252,97,43,236,26,66,35,81,137,30]])
m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).eval()
want = AutoModelForCausalLM.from_pretrained(merged).eval()
with torch.no_grad():
    d = (m(ids).logits - want(ids).logits).abs().max().item()
    moved = (m(ids).logits - AutoModelForCausalLM.from_pretrained(base)(ids).logits).abs().max().item()
print("max diff", d, "adapter effect", moved)
assert d < 1e-4 and moved > 1e-4, (d, moved)
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script, base.to_str().unwrap(), adapter.to_str().unwrap(), merged.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    println!("{stdout}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
}
