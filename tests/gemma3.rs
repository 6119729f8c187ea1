//! Gemma 3: the HF writer on the tiny fixture (`tests/fixtures/gemma3-tiny`, made by
//! `scripts/make-gemma3-fixture`), and the real Gemma 3 270M read from its GGUF (Q4_K_M,
//! fetched by `scripts/fetch-gemma3`) against the golden data made with transformers from the
//! same file (`tests/fixtures/gemma3/golden.safetensors`, the fixtures README §7b): last-position
//! logits of three prompts (1e-3 absolute; measured 2.1e-5), top-20 log-probabilities at every
//! position (1e-4; measured 3.6e-5), and
//! the perplexity of `smollm2/public.txt` in windows of 128 tokens, with and without `<bos>`
//! (0.5%; measured 192.2116 vs 192.2123 and 28.42418 vs 28.42427, 3e-6 relative). Build
//! `--release`: the real-model tests take minutes (two perplexity passes over 59 windows).

mod common;

use std::path::{Path, PathBuf};

use common::{fixture, GoldenFile};
use prunec_backends::burn::tensor::activation::log_softmax;
use prunec_backends::hf_writer::{write_hf_folder, HfWriteOptions};
use prunec_backends::runtime::{cpu, perplexity, Cpu, Executor};
use prunec_ir::Model;

fn load(path: &Path) -> Model {
    prunec_frontends::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes `model` as the driver does: its architecture prepares it, then gives its config.
fn write(model: &Model, out: &Path) -> PathBuf {
    let mut model = model.clone();
    let arch = prunec_frontends::arch::of(&model).expect("a registered architecture");
    arch.before_writing(&mut model).unwrap();
    let config = arch.hf_config(&model).unwrap();
    write_hf_folder(&model, &config, &[], &[], out, &[&model.info.source], HfWriteOptions::default()).unwrap()
}

fn logits(model: &Model, rows: &[Vec<u32>]) -> Vec<f32> {
    let exec = Executor::<Cpu>::new(model, &cpu()).unwrap();
    exec.forward(exec.ids(rows).unwrap()).unwrap().into_data().into_vec().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn tiny_gemma3_writes_its_own_config_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let model = load(&fixture("gemma3-tiny"));
    let out = write(&model, &dir.path().join("out"));
    let json = |p: &Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let (got, want) = (json(&out.join("config.json")), json(&fixture("gemma3-tiny/config.json")));
    for (k, v) in want.as_object().unwrap() {
        if k != "dtype" {
            assert_eq!(&got[k], v, "{k}");
        }
    }
    let back = load(&out);
    for (name, _) in model.params.iter() {
        assert_eq!(back.params.read_f32(name).unwrap(), model.params.read_f32(name).unwrap(), "{name}");
    }
    let rows = common::golden("gemma3-tiny").rows("input_ids");
    assert_eq!(logits(&back, &rows), logits(&model, &rows));
}

/// Pruned by the `prune` pass (one global threshold: layers of different widths; or uniform
/// widths: a stock config), written and read back: the same logits.
#[test]
fn pruned_tiny_gemma3_round_trips() {
    use prunec_passes::prune::{apply, select, Allocate, Amount, Gqa, Mode, PruneOptions};
    use prunec_passes::score::{score, Aggregation, Importance};
    let dir = tempfile::tempdir().unwrap();
    let rows = common::golden("gemma3-tiny").rows("input_ids");
    for (k, uniform) in [false, true].into_iter().enumerate() {
        let mut model = load(&fixture("gemma3-tiny"));
        prunec_passes::run_group(&mut model).unwrap();
        let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
        let opts = PruneOptions {
            amount: Amount::Ratio(0.3),
            mode: Mode::Block,
            attn_layers: None,
            mlp_layers: None,
            allocate: if uniform { Allocate::Uniform } else { Allocate::Sensitivity },
            gqa: Gqa::KvHeads,
            round_to: 1,
            uniform,
        };
        let selection = select(&model, &scores, &opts).unwrap();
        apply(&mut model, &selection).unwrap();
        let config = prunec_frontends::arch::gemma3::hf_config(&model).unwrap();
        assert_eq!(config.get("prunec_layer_widths").is_none(), uniform, "{config}");
        let out = write(&model, &dir.path().join(format!("pruned-{k}")));
        let back = load(&out);
        let diff = max_abs_diff(&logits(&model, &rows), &logits(&back, &rows));
        assert!(diff < 1e-5, "uniform {uniform}: written model's logits differ by {diff}");
    }
}

/// Bad Gemma 3 configs are refused, naming the file and the key.
#[test]
fn gemma3_configs_prunec_cannot_compute_are_refused() {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("gemma3-tiny/config.json")).unwrap()).unwrap();
    let path = Path::new("x/config.json");
    let refuse = |edit: &dyn Fn(&mut serde_json::Value), needle: &str| {
        let mut j = json.clone();
        edit(&mut j);
        let e = prunec_frontends::arch::gemma3::Gemma3Config::from_hf_json(path, &j).unwrap_err().to_string();
        assert!(e.contains("x/config.json") && e.contains(needle), "{e}");
    };
    refuse(&|j| j["final_logit_softcapping"] = 30.0.into(), "final_logit_softcapping");
    refuse(&|j| j["attn_logit_softcapping"] = 50.0.into(), "attn_logit_softcapping");
    refuse(&|j| j["hidden_activation"] = "silu".into(), "hidden_activation");
    refuse(&|j| j["layer_types"] = serde_json::json!(["sliding_attention"]), "layer_types");
    refuse(&|j| j["layer_types"][2] = "chunked_attention".into(), "layer_types[2]");
    refuse(&|j| j["rope_scaling"] = serde_json::json!({"rope_type": "linear", "factor": 8.0}), "linear");
    refuse(&|j| j["num_key_value_heads"] = 3.into(), "not a multiple");
    refuse(&|j| j["query_pre_attn_scalar"] = 0.into(), "query_pre_attn_scalar");
    // an older config: `sliding_window_pattern` instead of `layer_types`
    let mut old = json.clone();
    old.as_object_mut().unwrap().remove("layer_types");
    old["sliding_window_pattern"] = 3.into();
    let c = prunec_frontends::arch::gemma3::Gemma3Config::from_hf_json(path, &old).unwrap();
    use prunec_frontends::arch::gemma3::LayerType::{Full, Sliding};
    assert_eq!(c.layer_types, [Sliding, Sliding, Full, Sliding, Sliding, Full]);
}

/// transformers' `Gemma3ForCausalLM` loads a written (pruned, uniform) folder without custom
/// code and computes prunec's logits. Needs Python with torch and transformers ≥ 4.50:
/// `PRUNEC_PYTHON=/path/to/python cargo test --test gemma3 -- --ignored transformers`.
#[test]
#[ignore = "needs Python with torch and transformers (PRUNEC_PYTHON)"]
fn transformers_loads_written_gemma3_folders() {
    use prunec_passes::prune::{apply, select, Allocate, Amount, Gqa, Mode, PruneOptions};
    use prunec_passes::score::{score, Aggregation, Importance};
    use safetensors::tensor::TensorView;
    let dir = tempfile::tempdir().unwrap();
    let mut pruned = load(&fixture("gemma3-tiny"));
    prunec_passes::run_group(&mut pruned).unwrap();
    let scores = score(&pruned, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    let opts = PruneOptions { amount: Amount::UnitRatio(0.5), mode: Mode::Block, attn_layers: None, mlp_layers: None, allocate: Allocate::Uniform, gqa: Gqa::QueryHeadsEven, round_to: 1, uniform: true };
    let selection = select(&pruned, &scores, &opts).unwrap();
    apply(&mut pruned, &selection).unwrap();
    let rows = common::golden("gemma3-tiny").rows("input_ids");
    for (name, model) in [("unpruned", load(&fixture("gemma3-tiny"))), ("pruned", pruned)] {
        let out = write(&model, &dir.path().join(name));
        let back = load(&out);
        let exec = Executor::<Cpu>::new(&back, &cpu()).unwrap();
        let l = exec.forward(exec.ids(&rows).unwrap()).unwrap();
        let shape = l.dims().to_vec();
        let bytes: Vec<u8> = l.into_data().into_vec::<f32>().unwrap().iter().flat_map(|v| v.to_le_bytes()).collect();
        let ids: Vec<u8> = rows.iter().flatten().flat_map(|&t| i64::from(t).to_le_bytes()).collect();
        let views = [
            ("input_ids", TensorView::new(safetensors::Dtype::I64, vec![rows.len(), rows[0].len()], &ids).unwrap()),
            ("logits", TensorView::new(safetensors::Dtype::F32, shape, &bytes).unwrap()),
        ];
        let expected = dir.path().join(format!("{name}.prunec.safetensors"));
        safetensors::serialize_to_file(views, None, &expected).unwrap();
        let python = std::env::var("PRUNEC_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = fixture("hf_writer_transformers.py");
        let run = std::process::Command::new(&python).arg(&script).arg(&out).arg(&expected).output().expect("python runs");
        let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
        println!("{name}: {stdout}");
        assert!(run.status.success(), "{name}: {script:?} failed:\n{stdout}\n{stderr}");
    }
}

const VOCAB: usize = 262_144;

#[test]
fn gemma3_270m_prompts_match_golden_logits() {
    let Some(path) = common::gemma3() else { return };
    let model = load(&path);
    let g = GoldenFile::read(&fixture("gemma3/golden.safetensors"));
    let exec = Executor::<Cpu>::new(&model, &cpu()).unwrap();
    for i in 0..3 {
        let ids: Vec<u32> = g.rows(&format!("input_ids.{i}")).concat();
        let logits = exec.forward(exec.ids(std::slice::from_ref(&ids)).unwrap()).unwrap();
        let l = ids.len();
        let all: Vec<f32> = logits.clone().into_data().into_vec().unwrap();
        let last = &all[(l - 1) * VOCAB..l * VOCAB];
        let want = &g.floats("logits_last")[i * VOCAB..(i + 1) * VOCAB];
        let diff = max_abs_diff(last, want);
        println!("prompt {i}: max |Δ last logits| = {diff:e}");
        assert!(diff < 1e-3, "prompt {i}: {diff}");
        let logp: Vec<f32> = log_softmax(logits, 2).into_data().into_vec().unwrap();
        let (top_ids, top_vals) = (g.ints(&format!("logprobs_topk.{i}.ids")), g.floats(&format!("logprobs_topk.{i}.values")));
        let mut worst = 0.0f32;
        for pos in 0..l {
            for k in 0..20 {
                let id = top_ids[pos * 20 + k] as usize;
                worst = worst.max((logp[pos * VOCAB + id] - top_vals[pos * 20 + k]).abs());
            }
        }
        println!("prompt {i}: max |Δ top-20 log-probs| = {worst:e}");
        assert!(worst < 1e-4, "prompt {i}: {worst}");
    }
}

/// Mean NLL of `windows` (each scored on its own: every token after the first predicted).
fn mean_nll(exec: &Executor<Cpu>, windows: &[Vec<u32>]) -> f64 {
    let (mut nll, mut count) = (0.0f64, 0usize);
    for w in windows {
        let logits = exec.forward(exec.ids(std::slice::from_ref(w)).unwrap()).unwrap();
        let logp: Vec<f32> = log_softmax(logits, 2).into_data().into_vec().unwrap();
        for t in 0..w.len() - 1 {
            nll -= f64::from(logp[t * VOCAB + w[t + 1] as usize]);
            count += 1;
        }
    }
    nll / count as f64
}

#[test]
fn gemma3_270m_perplexity_matches_golden() {
    let Some(path) = common::gemma3() else { return };
    let model = load(&path);
    let g = GoldenFile::read(&fixture("gemma3/golden.safetensors"));
    let tokens: Vec<u32> = g.rows("public_txt.token_ids").concat();
    assert_eq!(tokens.len(), 7562);
    // without <bos>: LLM-Pruner's evaluator, windows of 128
    let ppl = perplexity::<Cpu>(&model, &cpu(), &tokens, 128, 4, |_, _| {}).unwrap();
    assert_eq!((ppl.windows, ppl.predicted), (59, 7493));
    let want = g.f64["public_txt.mean_nll"].1[0];
    println!("perplexity without <bos> {} (golden {}), mean NLL {} (golden {want})", ppl.perplexity, want.exp(), ppl.mean_nll);
    assert!((ppl.perplexity / want.exp() - 1.0).abs() < 0.005);
    // with <bos> (id 2) before each window of 127 text tokens
    let exec = Executor::<Cpu>::new(&model, &cpu()).unwrap();
    let windows: Vec<Vec<u32>> = tokens.chunks_exact(127).map(|c| std::iter::once(2).chain(c.iter().copied()).collect()).collect();
    assert_eq!(windows.len(), 59);
    let nll = mean_nll(&exec, &windows);
    let want = g.f64["public_txt.bos.mean_nll"].1[0];
    println!("perplexity with <bos> {} (golden {}), mean NLL {nll} (golden {want})", nll.exp(), want.exp());
    assert!((nll.exp() / want.exp() - 1.0).abs() < 0.005);
}

/// The GGUF model written as an HF folder (its `w + 1` norm weights back to `(1 + w)`) reads
/// back computing the same logits.
#[test]
fn gemma3_270m_written_as_hf_reloads() {
    let Some(path) = common::gemma3() else { return };
    let model = load(&path);
    let g = GoldenFile::read(&fixture("gemma3/golden.safetensors"));
    let dir = tempfile::tempdir().unwrap();
    let out = write(&model, &dir.path().join("hf"));
    let back = load(&out);
    let ids = g.rows("input_ids.1");
    let diff = max_abs_diff(&logits(&model, &ids), &logits(&back, &ids));
    println!("GGUF vs written HF folder: max |Δ logits| = {diff:e}");
    assert!(diff < 1e-3, "{diff}");
}
