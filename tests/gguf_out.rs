//! GGUF output: pruned models written as GGUF files read back as the same model (parameters
//! bit for bit in F32, the same logits), with layers of their own widths (llama.cpp's `deci`)
//! and unevenly served key/value heads repeated; quantized tensors whose pruned rows (or
//! heads) are whole blocks are copied block for block; and llama.cpp itself loads and runs
//! the files, computing the logits and perplexity prunec computes.

mod common;

use std::path::Path;

use common::fixture;
use prunec_frontends::arch::gguf_out::{self, GgufOptions, GgufWritten};
use prunec_frontends::gguf::{GgmlType, GgufFile};
use prunec_ir::{Model, ParamData};
use prunec_passes::prune::{apply, select, Allocate, Amount, Gqa, Mode, PruneOptions};
use prunec_passes::score::{score, Aggregation, Importance};

fn load(path: &Path) -> Model {
    prunec_frontends::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes `model` as GGUF at `out`, as `-o FILE.gguf` does.
fn write(model: &Model, out: &Path, ty: Option<GgmlType>) -> GgufWritten {
    write_with(model, out, ty, None)
}

/// [`write`] with the tokenizer `tokenizer` (`--tokenizer`) instead of the model's own.
fn write_with(model: &Model, out: &Path, ty: Option<GgmlType>, tokenizer: Option<&Path>) -> GgufWritten {
    let arch = prunec_frontends::arch::of(model).expect("a known architecture");
    let mut model = model.clone();
    arch.before_writing(&mut model).unwrap();
    let options = GgufOptions { ty, tokenizer: tokenizer.map(Path::to_path_buf), ..GgufOptions::default() };
    let plan = arch.gguf_plan(&model, gguf_out::block_width(&model, &options)).unwrap();
    gguf_out::write(&model, &plan, out, &[&model.info.source], options, &mut |_, _, _| {}).unwrap()
}

/// `model` pruned by the `prune` pass (L2 scores, 30%) in `mode`, one threshold across layers
/// when `global`.
fn pruned(path: &Path, mode: Mode, global: bool, gqa: Gqa) -> Model {
    pruned_by(path, mode, global, gqa, 0.3)
}

/// [`pruned`] by `ratio`.
fn pruned_by(path: &Path, mode: Mode, global: bool, gqa: Gqa, ratio: f64) -> Model {
    let opts = PruneOptions { amount: Amount::Ratio(ratio), mode, attn_layers: None, mlp_layers: None, allocate: if global { Allocate::Sensitivity } else { Allocate::Uniform }, gqa, round_to: 1, uniform: false };
    pruned_with(path, &opts)
}

/// `model` pruned by the `prune` pass (L2 scores) with `opts`.
fn pruned_with(path: &Path, opts: &PruneOptions) -> Model {
    let mut model = load(path);
    prunec_passes::run_group(&mut model).unwrap();
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    let selection = select(&model, &scores, opts).unwrap();
    apply(&mut model, &selection).unwrap();
    model
}

fn logits(m: &Model) -> Vec<f32> {
    use prunec_backends::runtime::{cpu, Cpu, Executor};
    let exec = Executor::<Cpu>::new(m, &cpu()).unwrap();
    exec.forward(exec.ids(&[vec![250, 3, 97, 43, 236, 26, 66]]).unwrap()).unwrap().into_data().into_vec().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The `i32`/`u32` values of a per-layer key (one value: every layer's).
fn per_layer(file: &GgufFile, key: &str, layers: usize) -> Vec<u64> {
    match file.get(key).unwrap_or_else(|| panic!("{key} is missing")) {
        prunec_frontends::gguf::GgufValue::Array(items) => items.iter().map(|v| v.as_u64().unwrap()).collect(),
        v => vec![v.as_u64().unwrap(); layers],
    }
}

/// Pruned as the `prune` pass prunes — heads and channels per layer with one global threshold
/// (layers of different widths: `deci`), hidden channels (`llama`), query heads taken
/// unevenly from their key/value heads (repeated for llama.cpp) — written as F32 GGUF, each
/// reads back computing the same logits; without repeated heads, with the same parameters
/// bit for bit.
#[test]
fn pruned_models_written_as_gguf_read_back_as_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("block", Mode::Block, true, Gqa::KvHeads, "deci"),
        ("channel", Mode::Channel, false, Gqa::KvHeads, "llama"),
        ("query", Mode::Block, false, Gqa::QueryHeads, "llama"),
    ];
    for (name, mode, global, gqa, arch) in cases {
        let model = pruned(&fixture("gguf/llama-gqa.gguf"), mode, global, gqa);
        let out = dir.path().join(format!("{name}.gguf"));
        let written = write(&model, &out, None);
        let file = GgufFile::open(&out).unwrap();
        assert_eq!(file.get_str("general.architecture").unwrap(), arch, "{name}");
        if arch == "deci" {
            assert!(!file.metadata().keys().any(|k| k.starts_with("llama.")), "{name}: the input's llama.* widths were kept");
        }
        // the input's own metadata comes along
        assert_eq!(file.get("general.name"), GgufFile::open(&fixture("gguf/llama-gqa.gguf")).unwrap().get("general.name"), "{name}");
        if name == "block" {
            assert_eq!(written.quantized, 0, "{name}: F32 tensors pruned by rows and columns are copied");
        }
        let back = load(&out);
        let layers = file.get_usize(&format!("{arch}.block_count")).unwrap();
        let heads = per_layer(&file, &format!("{arch}.attention.head_count"), layers);
        let kv = per_layer(&file, &format!("{arch}.attention.head_count_kv"), layers);
        match name {
            "block" => assert!(heads.windows(2).any(|w| w[0] != w[1]) || kv.windows(2).any(|w| w[0] != w[1]), "{name}: widths {heads:?} {kv:?}"),
            "query" => assert!(kv.iter().zip(&heads).any(|(k, h)| k == h), "{name}: key/value heads repeated: {heads:?} {kv:?}"),
            _ => {}
        }
        if name != "query" {
            let names = |m: &Model| m.params.iter().map(|(n, p)| (n.clone(), p.shape.clone())).collect::<Vec<_>>();
            assert_eq!(names(&back), names(&model), "{name}");
            for (p, _) in model.params.iter() {
                let (a, b) = (model.params.read_f32(p).unwrap(), back.params.read_f32(p).unwrap());
                assert!(a.iter().zip(b.iter()).all(|(x, y)| x.to_bits() == y.to_bits()), "{name}: {p} differs");
            }
        }
        let diff = max_diff(&logits(&model), &logits(&back));
        assert!(diff < 1e-5, "{name}: the GGUF's logits differ by {diff}");
    }
}

/// The rows of a quantized GGUF tensor, as bytes.
fn rows(file: &GgufFile, name: &str) -> Vec<Vec<u8>> {
    let info = file.tensor_info(name).unwrap_or_else(|| panic!("{name}"));
    let (bs, ts) = info.ty.block_layout().unwrap();
    file.tensor_bytes(info).chunks(info.dims[0] as usize / bs * ts).map(<[u8]>::to_vec).collect()
}

/// The rows of the base tensor a pruned parameter keeps.
fn kept_rows(model: &Model, name: &str) -> Vec<usize> {
    match &model.params.get(name).unwrap().data {
        ParamData::View(v) => v.keep[0].clone().unwrap_or_else(|| (0..v.base_shape[0]).collect()),
        _ => (0..model.params.get(name).unwrap().shape[0]).collect(),
    }
}

/// Rows (MLP channels, whole heads) removed from Q4_1 and Q8_0 tensors: every row written is
/// the input's row, byte for byte (no quantization added); q/k rows in llama.cpp's rotary
/// layout, head by head.
#[test]
fn pruned_rows_of_quantized_tensors_are_the_input_blocks_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
        let quantized = dir.path().join(format!("{}.gguf", ty.name()));
        let full = write(&load(&fixture("gguf/llama-gqa.gguf")), &quantized, Some(ty));
        assert!(full.types.contains_key(ty.name()), "{:?}", full.types);
        let model = pruned(&quantized, Mode::Block, true, Gqa::KvHeads);
        let out = dir.path().join(format!("pruned-{}.gguf", ty.name()));
        let written = write(&model, &out, None);
        assert!(written.copied > 0, "{written:?}");
        let (input, output) = (GgufFile::open(&quantized).unwrap(), GgufFile::open(&out).unwrap());
        let mut checked = 0;
        for l in 0..4 {
            for (hf, gguf) in [("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("self_attn.v_proj", "attn_v")] {
                let name = format!("blk.{l}.{gguf}.weight");
                if output.tensor_info(&name).is_none() {
                    continue;
                }
                assert_eq!(output.tensor_info(&name).unwrap().ty, ty, "{name}");
                let keep = kept_rows(&model, &format!("model.layers.{l}.{hf}.weight"));
                let (a, b) = (rows(&input, &name), rows(&output, &name));
                for (i, &k) in keep.iter().enumerate() {
                    assert_eq!(b[i], a[k], "{name}: row {i} is not input row {k}");
                }
                // MLP channels padded to whole blocks of 32 with zero rows (they add nothing)
                assert_eq!(b.len(), if hf.starts_with("mlp") { keep.len().next_multiple_of(32) } else { keep.len() }, "{name}");
                assert!(b[keep.len()..].iter().all(|r| r.iter().all(|&x| x == 0)), "{name}: padding rows are not zeros");
                checked += 1;
            }
            // q: whole heads kept, each head's rows in llama.cpp's order as in the input
            let name = format!("blk.{l}.attn_q.weight");
            let keep = kept_rows(&model, &format!("model.layers.{l}.self_attn.q_proj.weight"));
            let hd = 16;
            let (a, b) = (rows(&input, &name), rows(&output, &name));
            for (h, head) in keep.chunks(hd).enumerate() {
                let from = head[0] / hd;
                assert_eq!(b[h * hd..(h + 1) * hd], a[from * hd..(from + 1) * hd], "{name}: head {h} is not input head {from}");
            }
            checked += 1;
        }
        assert!(checked >= 12, "{checked}");
    }
}

/// `-o FILE.gguf` from the command line: the summary says how tensors were written, an
/// existing file is kept without `--force`, the input is never the output.
#[test]
fn gguf_output_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.gguf");
    let input = fixture("gguf/llama-gqa.gguf");
    let args = |o: &Path, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [input.to_str().unwrap(), "--pass", "group,score,prune", "--importance", "l2", "--ratio", "0.3", "-o", o.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| common::prunec(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let first = run(args(&out, &["--gguf-type", "q8_0"]));
    let (_, err) = common::texts(&first);
    assert!(first.status.success(), "{err}");
    assert!(err.contains("copied block for block") && err.contains("q8_0"), "{err}");
    let before = std::fs::read(&out).unwrap();
    common::assert_clean_failure(&run(args(&out, &[])), &["p.gguf", "--force"]);
    assert_eq!(std::fs::read(&out).unwrap(), before, "kept without --force");
    let again = run(args(&out, &["--force", "--gguf-type", "q4_0"]));
    assert!(again.status.success(), "{}", common::texts(&again).1);
    assert_ne!(std::fs::read(&out).unwrap(), before, "replaced with --force");
    common::assert_usage_error(&run(args(&out, &["--gguf-type", "q3_k"])), &["q3_k", "q8_0"]);
    let copy = dir.path().join("in.gguf");
    std::fs::copy(&input, &copy).unwrap();
    let mut a = args(&copy, &["--force"]);
    a[0] = copy.to_str().unwrap().to_string();
    common::assert_clean_failure(&run(a), &["in.gguf", "input"]);
}

/// llama.cpp (`llama-cpp-python`, built from source by `scripts/fetch-llama-cpp`) runs
/// `scripts/llama_cpp_run.py MODE FILE ARGS`; its JSON. `None` when `PRUNEC_OFFLINE` is set.
fn llama_cpp(mode: &str, file: &Path, args: &[&str]) -> Option<serde_json::Value> {
    let path = common::fetched("fetch-llama-cpp")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/llama_cpp_run.py");
    let out = std::process::Command::new("python3").env("PYTHONPATH", &path).arg(script).arg(mode).arg(file).args(args).output().unwrap();
    assert!(out.status.success(), "llama_cpp_run.py {mode} {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// llama.cpp's logits of `tokens` (comma-separated) in GGUF file `file`, KV cache in F32; `None`
/// when `PRUNEC_OFFLINE` is set.
fn llama_cpp_logits(file: &Path, tokens: &str) -> Option<Vec<f32>> {
    let json = llama_cpp("logits", file, &["--tokens", tokens, "--kv-type", "f32"])?;
    Some(json["logits"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32)).collect())
}

/// The root mean square of `a − b` over that of `a`.
fn relative_rms(a: &[f32], b: &[f32]) -> f32 {
    let rms = |v: &mut dyn Iterator<Item = f32>| -> f64 {
        let (s, n) = v.fold((0.0f64, 0usize), |(s, n), x| (s + f64::from(x) * f64::from(x), n + 1));
        (s / n.max(1) as f64).sqrt()
    };
    (rms(&mut a.iter().zip(b).map(|(x, y)| x - y)) / rms(&mut a.iter().copied())) as f32
}

/// Pruned fixture-size GGUF files — layers of different widths (`deci`), repeated key/value
/// heads, quantized — load in llama.cpp, whose logits on the same tokens are prunec's, as
/// relative RMS differences: F32 within 1e-4 (measured 1.3e-6: summation orders, the KV cache
/// kept in F32); Q8_0 within 5e-2 (measured 3.6e-2 on this random 64-wide model: llama.cpp
/// quantizes the activations to Q8_0 for its Q8_0 products, prunec multiplies them in F32).
#[test]
fn llama_cpp_computes_the_logits_prunec_computes() {
    let dir = tempfile::tempdir().unwrap();
    let ids = [250u32, 3, 97, 43, 236, 26, 66];
    let tokens = ids.map(|i| i.to_string()).join(",");
    for (name, gqa, ty, tol) in [("deci-f32", Gqa::KvHeads, None, 1e-4f32), ("query-f32", Gqa::QueryHeads, None, 1e-4), ("deci-q8_0", Gqa::KvHeads, Some(GgmlType::Q8_0), 5e-2)] {
        // an HF folder with a tokenizer (llama.cpp loads no model without one)
        let hf = common::copy_fixture("llama-gqa");
        common::byte_tokenizer(hf.path());
        let model = pruned(hf.path(), Mode::Block, gqa == Gqa::KvHeads, gqa);
        let out = dir.path().join(format!("{name}.gguf"));
        write(&model, &out, ty);
        let Some(theirs) = llama_cpp_logits(&out, &tokens) else { return };
        let ours = logits(&load(&out));
        let spread = ours.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = max_diff(&ours, &theirs);
        let relative = relative_rms(&ours, &theirs);
        let argmax = |v: &[f32]| v.chunks(256).map(|r| r.iter().enumerate().fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0).collect::<Vec<_>>();
        let same_top = argmax(&ours).iter().zip(argmax(&theirs)).filter(|(a, b)| **a == *b).count();
        println!("{name}: llama.cpp's logits differ from prunec's by {diff} at most (largest |logit| {spread}), {relative:.2e} relative RMS; same top token at {same_top} of {} positions", ids.len());
        assert!(relative <= tol, "{name}: llama.cpp's logits differ from prunec's by {relative:.2e} relative RMS ({diff} at most)");
    }
}

/// The other families and an emptied MLP in llama.cpp (F32, on the same tokens): Qwen2 with
/// pruned heads (a `deci` file: llama.cpp's `qwen2` wants q as wide as the hidden state, and
/// its biases are permuted with its rows), Qwen3 with its per-head norms (`qwen3`, widths
/// alike), and a LLaMA layer whose MLP pruning emptied (32 zero channels: llama.cpp's `deci`
/// would drop the layer's attention with an empty MLP), and Mistral (`llama`, without its
/// sliding window of 5, as llama.cpp's converter writes it: compared on 5 tokens, which the
/// window does not cut). prunec reads each file back computing the logits it computed before
/// writing.
#[test]
fn other_families_and_emptied_mlps_run_in_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let all = [250u32, 3, 97, 43, 236, 26, 66];
    for (fixture_name, arch, empty_mlp, n) in [("qwen2", "deci", false, 7), ("qwen3", "qwen3", false, 7), ("llama-gqa", "deci", true, 7), ("mistral", "llama", false, 5)] {
        let ids = &all[..n];
        let tokens = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let hf = common::copy_fixture(fixture_name);
        common::byte_tokenizer(hf.path());
        if empty_mlp {
            empty_mlp_of_layer_1(hf.path());
        }
        let mut model = load(hf.path());
        prunec_passes::run_group(&mut model).unwrap();
        let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
        let opts = PruneOptions { amount: Amount::Ratio(0.3), mode: Mode::Block, attn_layers: None, mlp_layers: None, allocate: Allocate::Uniform, gqa: Gqa::KvHeads, round_to: 1, uniform: false };
        let selection = select(&model, &scores, &opts).unwrap();
        apply(&mut model, &selection).unwrap();
        let mlp_only = empty_mlp.then_some(());
        let out = dir.path().join(format!("{fixture_name}.gguf"));
        write(&model, &out, None);
        let file = GgufFile::open(&out).unwrap();
        assert_eq!(file.get_str("general.architecture").unwrap(), arch, "{fixture_name}");
        if mlp_only.is_some() {
            // layer 1 has no MLP in the model; the file gives it one zero channel (F32: blocks of 1)
            assert!(model.params.get("model.layers.1.mlp.gate_proj.weight").is_none(), "layer 1's MLP was not emptied");
            assert_eq!(per_layer(&file, "deci.feed_forward_length", 4)[1], 1);
            assert!(file.tensor_info("blk.1.ffn_norm.weight").is_some());
        }
        let before = logits_of(&model, ids);
        let back = max_diff(&before, &logits_of(&load(&out), ids));
        assert!(back < 1e-5, "{fixture_name}: read back, logits differ by {back}");
        let Some(theirs) = llama_cpp_logits(&out, &tokens) else { continue };
        let diff = max_diff(&before, &theirs);
        println!("{fixture_name} ({arch}): llama.cpp's logits differ from prunec's by {diff}");
        assert!(diff < 1e-3, "{fixture_name}: llama.cpp's logits differ from prunec's by {diff}");
    }
}

/// Takes layer 1's MLP out of the `llama-gqa` HF folder at `dir` (its widths listed per layer:
/// a model whose pruning emptied that MLP).
fn empty_mlp_of_layer_1(dir: &Path) {
    use safetensors::tensor::TensorView;
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| !(n.starts_with("model.layers.1.mlp.") || n.starts_with("model.layers.1.post_attention_layernorm")))
        .collect();
    safetensors::serialize_to_file(kept, None, &dir.join("model.safetensors")).unwrap();
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[prunec_frontends::arch::llama::LAYER_WIDTHS_KEY] = (0..4)
        .map(|l| serde_json::json!({"num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": if l == 1 { 0 } else { 176 }}))
        .collect();
    std::fs::write(&path, config.to_string()).unwrap();
}

/// The issue's own command on the real SmolLM2-135M (Q4_1 as shipped): `--pass
/// group,score,prune --ratio 0.2 -o smol-pruned.gguf` (the default allocation: layers of their
/// own widths, written as `deci`). llama.cpp loads it; its perplexity on prunec's tokens (all 59
/// windows of 128 of `tests/fixtures/smollm2/public.txt`, KV cache in F32) is prunec's within
/// 1% (measured 0.10%: llama.cpp quantizes the activations for its Q4_1 products, prunec
/// multiplies in F32; over the first 12 windows alone 0.83%, so all are taken); greedy
/// generation gives text. (LLM-Pruner's recipe, `deci` with repeated key/value heads, is in
/// docs/gguf.md's table: within 0.9% over 12 windows.)
#[test]
fn pruned_smollm2_gguf_runs_in_llama_cpp_as_in_prunec() {
    let Some(smol) = common::smollm2() else { return };
    if common::fetched("fetch-llama-cpp").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smol-pruned.gguf");
    let run = common::prunec(&[smol.to_str().unwrap(), "--pass", "group,score,prune", "--ratio", "0.2", "-o", out.to_str().unwrap()]);
    assert!(run.status.success(), "{}", common::texts(&run).1);
    let file = GgufFile::open(&out).unwrap();
    assert_eq!(file.get_str("general.architecture").unwrap(), "deci");
    assert_eq!(file.get_str("tokenizer.chat_template").ok(), GgufFile::open(&smol).unwrap().get_str("tokenizer.chat_template").ok());
    let (ours, theirs) = perplexities(&out, 59).unwrap(); // all 59 windows
    let gap = (theirs / ours - 1.0).abs();
    println!("pruned SmolLM2 GGUF: perplexity {ours:.4} in prunec, {theirs:.4} in llama.cpp ({:.2}% apart)", 100.0 * gap);
    assert!(gap < 0.01, "llama.cpp's perplexity {theirs} is not within 1% of prunec's {ours}");
    generates_text(&out);
}

/// prunec's perplexity (`--pass eval`) of GGUF file `out` over the first `windows` windows of
/// 128 tokens of `tests/fixtures/smollm2/public.txt`, and llama.cpp's on the very tokens prunec
/// evaluated (the text as prunec's tokenizer of the file splits it, with the special tokens its
/// configuration adds around it; KV cache in F32); `None` when `PRUNEC_OFFLINE` is set.
fn perplexities(out: &Path, windows: usize) -> Option<(f64, f64)> {
    let text = fixture("smollm2/public.txt");
    let limit = windows.to_string();
    let ours = common::prunec(&[out.to_str().unwrap(), "--pass", "eval", "--eval-text", text.to_str().unwrap(), "--limit", &limit]);
    let (stdout, stderr) = common::texts(&ours);
    assert!(ours.status.success(), "{stderr}");
    let ppl = |line: &str| line.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()).unwrap();
    let ours = ppl(stdout.lines().chain(stderr.lines()).find(|l| l.starts_with("perplexity:")).expect("a perplexity line"));
    let tok = prunec_frontends::tokenizer::Tokenizer::for_model(out).unwrap();
    let ids = tok.encode_with_special(&std::fs::read_to_string(&text).unwrap()).unwrap();
    let ids_file = out.with_extension("ids.json");
    std::fs::write(&ids_file, serde_json::to_string(&ids).unwrap()).unwrap();
    let theirs = llama_cpp("ppl", out, &["--tokens-file", ids_file.to_str().unwrap(), "--max-windows", &limit, "--kv-type", "f32"])?;
    Some((ours, theirs["perplexity"].as_f64().unwrap()))
}

/// Greedy generation by llama.cpp from GGUF file `out` gives text.
fn generates_text(out: &Path) {
    let Some(generated) = llama_cpp("generate", out, &["--prompt", "The capital of France is", "--max-tokens", "16"]) else { return };
    let words = generated["text"].as_str().unwrap();
    println!("llama.cpp generates: {words:?}");
    assert!(words.chars().filter(|c| c.is_alphabetic()).count() >= 8, "no text: {generated}");
}

/// The real Gemma 3 270M (Q4_K_M as shipped) pruned by `--ratio 0.2` (sensitivity allocation:
/// layers of different widths, every one padded to the widest, MLP channels to whole Q4_K/Q6_K
/// super-blocks so that `ffn_down` keeps its type) and written as GGUF in its own types:
/// llama.cpp loads it and greedy generation gives text. That file converted to F32
/// (`--gguf-type f32`, no pass: the padded file read back and written again, its quantized
/// values exactly): llama.cpp's perplexity on prunec's tokens (the first 4 windows of 128 of
/// `tests/fixtures/smollm2/public.txt`, `<bos>` first, KV cache in F32) is prunec's within 1%
/// (measured 0.09%). Quantized files are not held to 1%: llama.cpp multiplies quantized
/// matrices by activations quantized to 8 bits, which moves even the unpruned model as shipped
/// by 2.6%, and this pruned one (perplexity ~3700, a knife edge) by 7–9% (docs/gguf.md).
#[test]
fn pruned_gemma3_gguf_runs_in_llama_cpp_as_in_prunec() {
    let Some(gemma) = common::gemma3() else { return };
    if common::fetched("fetch-llama-cpp").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gemma3-pruned.gguf");
    let run = common::prunec(&[gemma.to_str().unwrap(), "--pass", "group,score,prune", "--ratio", "0.2", "-o", out.to_str().unwrap()]);
    let (_, stderr) = common::texts(&run);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("every layer padded to"), "{stderr}");
    let (file, input) = (GgufFile::open(&out).unwrap(), GgufFile::open(&gemma).unwrap());
    assert_eq!(file.get_str("general.architecture").unwrap(), "gemma3");
    for key in ["tokenizer.ggml.model", "tokenizer.ggml.add_bos_token", "tokenizer.chat_template", "gemma3.attention.sliding_window"] {
        assert_eq!(file.get(key), input.get(key), "{key}");
    }
    generates_text(&out);
    let f32 = dir.path().join("gemma3-pruned-f32.gguf");
    let run = common::prunec(&[out.to_str().unwrap(), "--gguf-type", "f32", "-o", f32.to_str().unwrap()]);
    assert!(run.status.success(), "{}", common::texts(&run).1);
    let Some((ours, theirs)) = perplexities(&f32, 4) else { return };
    let gap = (theirs / ours - 1.0).abs();
    println!("pruned Gemma 3 270M, F32 GGUF: perplexity {ours:.4} in prunec, {theirs:.4} in llama.cpp ({:.2}% apart)", 100.0 * gap);
    assert!(gap < 0.01, "llama.cpp's perplexity {theirs} is not within 1% of prunec's {ours}");
}

/// An HF LLaMA folder as wide as k-quants need (hidden 256: rows of whole super-blocks; 4 heads
/// of 64, 2 key/value heads, MLP 1024, 2 layers, the 256 tokens of [`common::byte_tokenizer`]),
/// its weights seeded random.
fn wide_llama() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("llama-gqa").join("config.json")).unwrap()).unwrap();
    for (k, v) in [("hidden_size", 256), ("head_dim", 64), ("num_attention_heads", 4), ("num_key_value_heads", 2), ("intermediate_size", 1024), ("num_hidden_layers", 2)] {
        config[k] = v.into();
    }
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    // xorshift, two uniforms summed: values spread like weights, reproducible
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        let values: Vec<u8> = (0..shape.iter().product::<usize>()).flat_map(|_| (offset + scale * (next() + next())).to_le_bytes()).collect();
        tensors.push((name, shape, values));
    };
    add("model.embed_tokens.weight".into(), vec![256, 256], 1.0, 0.0);
    add("model.norm.weight".into(), vec![256], 0.2, 1.0);
    for l in 0..2 {
        let p = format!("model.layers.{l}");
        for (n, shape) in [("self_attn.q_proj", [256, 256]), ("self_attn.k_proj", [128, 256]), ("self_attn.v_proj", [128, 256]), ("self_attn.o_proj", [256, 256]), ("mlp.gate_proj", [1024, 256]), ("mlp.up_proj", [1024, 256]), ("mlp.down_proj", [256, 1024])] {
            add(format!("{p}.{n}.weight"), shape.to_vec(), 0.15, 0.0);
        }
        for n in ["input_layernorm", "post_attention_layernorm"] {
            add(format!("{p}.{n}.weight"), vec![256], 0.2, 1.0);
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        tensors.iter().map(|(n, s, v)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), v).unwrap())).collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    common::byte_tokenizer(dir.path());
    dir
}

/// `--gguf-type q4_k|q6_k`: every matrix whose rows are whole super-blocks of 256 is written in
/// the k-quant, its bytes ggml's reference quantization (`quantize_row_q4_K_ref`,
/// `quantize_row_q6_K_ref`) of the values the F32 file holds; MLP channels are padded to whole
/// super-blocks so that `ffn_down` keeps the type; rows of 128 (two heads of 64) fall back to
/// Q8_0 and are reported. prunec reads the file back within the type's error of the F32 logits
/// (relative RMS: Q4_K 0.3 at most, measured 0.22 on this random model; Q6_K 0.08, measured
/// 0.055, 3.9× closer), and llama.cpp computes prunec's logits of the same file (5e-2; measured
/// 2.6e-2 and 2.5e-2: llama.cpp quantizes the activations to Q8_K for its k-quant products,
/// prunec multiplies in F32).
#[test]
fn k_quants_are_written_where_rows_are_whole_super_blocks() {
    let hf = wide_llama();
    let dir = tempfile::tempdir().unwrap();
    let model = pruned(hf.path(), Mode::Block, false, Gqa::KvHeads);
    let exact = logits(&model);
    let f32_file = dir.path().join("f32.gguf");
    write(&model, &f32_file, Some(GgmlType::F32));
    let reference = GgufFile::open(&f32_file).unwrap();
    let ids = [250u32, 3, 97, 43, 236, 26, 66];
    let tokens = ids.map(|i| i.to_string()).join(",");
    let mut errors = Vec::new();
    for (ty, own_tol) in [(GgmlType::Q4_K, 0.3f32), (GgmlType::Q6_K, 0.08)] {
        let out = dir.path().join(format!("{}.gguf", ty.name()));
        let written = write(&model, &out, Some(ty));
        let file = GgufFile::open(&out).unwrap();
        let mut in_type = 0;
        for info in file.tensors().iter().filter(|t| t.dims.len() == 2) {
            let row = info.dims[0] as usize;
            if row.is_multiple_of(256) {
                assert_eq!(info.ty, ty, "{}: rows of {row}", info.name);
                // the F32 file's values (the same plan: rotary rows), quantized by ggml's
                // reference; MLP channels padded with zeros here to whole super-blocks
                let values = reference.dequantize(&info.name).unwrap();
                let f32_row = reference.tensor_info(&info.name).unwrap().dims[0] as usize;
                let mut padded: Vec<f32> = values.chunks(f32_row).flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0.0, row - f32_row))).collect();
                padded.resize(row * info.dims[1] as usize, 0.0);
                let want = prunec_frontends::gguf::quant::quantize(ty, &padded).unwrap();
                assert!(file.tensor_bytes(info) == want.as_slice(), "{}: not the reference quantization of its values", info.name);
                in_type += 1;
            } else {
                assert_eq!(info.ty, GgmlType::Q8_0, "{}: rows of {row} fall back", info.name);
                assert!(written.fell_back.iter().any(|(n, want, got)| *n == info.name && *want == ty && *got == GgmlType::Q8_0), "{}: {:?}", info.name, written.fell_back);
            }
        }
        // embeddings, q/k/v, gate/up and down (padded to 256) of both layers
        assert!(in_type >= 13, "{}: {in_type} matrices", ty.name());
        assert_eq!(file.tensor_info("blk.0.ffn_down.weight").unwrap().ty, ty);
        let ours = logits(&load(&out));
        let own = relative_rms(&exact, &ours);
        println!("{}: prunec's logits of the file are {own:.2e} (relative RMS) from the F32 model's", ty.name());
        assert!(own <= own_tol, "{}: {own:.2e} from the F32 logits", ty.name());
        errors.push(own);
        let Some(theirs) = llama_cpp_logits(&out, &tokens) else { continue };
        let apart = relative_rms(&ours, &theirs);
        println!("{}: llama.cpp's logits are {apart:.2e} (relative RMS) from prunec's", ty.name());
        assert!(apart <= 5e-2, "{}: llama.cpp's logits are {apart:.2e} from prunec's", ty.name());
    }
    // two bits more, a quarter of the error (measured 3.9×)
    assert!(errors[1] * 2.5 < errors[0], "Q6_K is not much closer to F32 than Q4_K: {errors:?}");
}

/// Token ids of the tiny model's vocabulary (128).
const FORM_IDS: [u32; 10] = [5, 77, 23, 101, 9, 64, 31, 2, 118, 40];

fn logits_of(m: &Model, ids: &[u32]) -> Vec<f32> {
    use prunec_backends::runtime::{cpu, Cpu, Executor};
    let exec = Executor::<Cpu>::new(m, &cpu()).unwrap();
    exec.forward(exec.ids(&[ids.to_vec()]).unwrap()).unwrap().into_data().into_vec().unwrap()
}

/// `max |a − b| / max |b|`.
fn relative(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(f32::MIN_POSITIVE);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}

/// The tokenizer of ONNX form `rel`: torch's exports have none beside them (`--tokenizer`
/// gives the HF folder's).
fn form_tokenizer(rel: &str) -> Option<std::path::PathBuf> {
    rel.starts_with("torch/").then(|| fixture("onnx-forms/hf/tokenizer.json"))
}

/// An ONNX model written as GGUF, as `-o FILE.gguf` does: recognised as the LLaMA it is first.
fn write_onnx(model: &Model, out: &Path, ty: Option<GgmlType>, tokenizer: Option<&Path>) -> GgufWritten {
    let llama = prunec_frontends::arch::llama::recognise::as_llama(model).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(llama.info.architecture, "llama");
    write_with(&llama, out, ty, tokenizer)
}

/// `model` pruned by half of its parameters (L2 scores; sensitivity allocation, the default:
/// layers of their own widths).
fn pruned_by_half(mut model: Model) -> Model {
    prunec_passes::run_group(&mut model).unwrap();
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    let opts = PruneOptions { amount: Amount::Ratio(0.5), mode: Mode::Block, attn_layers: None, mlp_layers: None, allocate: Allocate::Sensitivity, gqa: Gqa::KvHeads, round_to: 1, uniform: false };
    let selection = select(&model, &scores, &opts).unwrap();
    apply(&mut model, &selection).unwrap();
    model
}

/// Every ONNX form, recognised as a LLaMA by its structure and written as F32 GGUF, reads back
/// computing the logits of the HF folder it was exported from (the 4-bit form: of its own
/// dequantized weights), relative 1e-5; pruned by half (layers of their own widths: `deci`),
/// the logits of the pruned ONNX model.
#[test]
fn onnx_forms_written_as_gguf_compute_their_logits() {
    let dir = tempfile::tempdir().unwrap();
    let hf = logits_of(&load(&fixture("onnx-forms/hf")), &FORM_IDS);
    for rel in common::ONNX_FORMS {
        let path = fixture("onnx-forms").join(rel);
        let onnx = load(&path);
        let tokenizer = form_tokenizer(rel);
        let name = rel.replace('/', "-");
        let out = dir.path().join(format!("{name}.gguf"));
        write_onnx(&onnx, &out, Some(GgmlType::F32), tokenizer.as_deref());
        let file = GgufFile::open(&out).unwrap();
        assert_eq!(file.get_str("general.architecture").unwrap(), "llama", "{rel}");
        assert_eq!(file.get_str("tokenizer.ggml.model").unwrap(), "gpt2", "{rel}");
        let back = logits_of(&load(&out), &FORM_IDS);
        let own = logits_of(&onnx, &FORM_IDS);
        let (to_onnx, to_hf) = (relative(&back, &own), relative(&back, &hf));
        println!("{rel}: written as GGUF, read back: logits {to_onnx:.1e} from the ONNX model's, {to_hf:.1e} from the HF folder's");
        assert!(to_onnx < 1e-5, "{rel}: {to_onnx}");
        if !rel.contains("int4") {
            assert!(to_hf < 1e-5, "{rel}: {to_hf}");
        }

        let pruned = pruned_by_half(onnx);
        let out = dir.path().join(format!("{name}-pruned.gguf"));
        write_onnx(&pruned, &out, Some(GgmlType::F32), tokenizer.as_deref());
        let file = GgufFile::open(&out).unwrap();
        let arch = file.get_str("general.architecture").unwrap().to_string();
        let back = load(&out);
        assert_eq!(back.params.numel(), pruned.params.numel() + zero_padding(&back), "{rel}: parameters");
        let d = relative(&logits_of(&back, &FORM_IDS), &logits_of(&pruned, &FORM_IDS));
        println!("{rel}: pruned by half ({} parameters left), written as `{arch}`: logits {d:.1e} from the pruned ONNX model's", pruned.params.numel());
        assert!(d < 1e-5, "{rel}: {d}");
    }
}

/// Values a written file holds that the model had not: none in F32 (no MLP padded), but a
/// layer whose MLP pruning emptied gets one zero channel (three parameters of the hidden
/// width and the channel: gate and up rows, a down column, the norm's weights).
fn zero_padding(back: &Model) -> usize {
    let g = |n: &str| back.params.read_f32(n).ok();
    let mut extra = 0;
    for l in 0.. {
        let Some(gate) = g(&format!("model.layers.{l}.mlp.gate_proj.weight")) else {
            if back.params.iter().any(|(n, _)| n.starts_with(&format!("model.layers.{l}."))) {
                continue;
            }
            break;
        };
        if gate.iter().all(|&x| x == 0.0) {
            let hidden = back.params.get("model.embed_tokens.weight").unwrap().shape[1];
            extra += 4 * hidden;
        }
    }
    extra
}

/// The 4-bit form written with `--gguf-type q4_0`: onnxruntime's symmetric 4-bit blocks
/// (`MatMulNBits`, blocks of 32 along the input, scale `max/−8`, zero point 8) are ggml's Q4_0,
/// so each block's codes come back as they were, only the scale rounded to f16: every value
/// written is `f16(scale) · code` of its block, exactly.
#[test]
fn four_bit_onnx_weights_are_written_as_their_q4_0_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture("onnx-forms/genai-int4/model.onnx");
    let onnx = load(&path);
    let llama = prunec_frontends::arch::llama::recognise::as_llama(&onnx).unwrap();
    let out = dir.path().join("int4.gguf");
    let written = write_onnx(&onnx, &out, Some(GgmlType::Q4_0), None);
    assert!(written.fell_back.is_empty(), "{:?}", written.fell_back);
    let back = load(&out);
    let file = GgufFile::open(&out).unwrap();
    let mut checked = 0;
    for (name, _) in llama.params.iter().filter(|(_, p)| p.shape.len() == 2) {
        let w = llama.params.read_f32(name).unwrap();
        let a = back.params.read_f32(name).unwrap();
        for (block, (wb, ab)) in w.chunks(32).zip(a.chunks(32)).enumerate() {
            let extreme = wb.iter().fold(0f32, |m, &x| if x.abs() > m.abs() { x } else { m });
            let scale = extreme / -8.0;
            let d = half::f16::from_f32(scale).to_f32();
            for (x, y) in wb.iter().zip(ab) {
                let code = if scale == 0.0 { 0.0 } else { x / scale };
                assert!((code - code.round()).abs() < 1e-3 && (-8.0..=7.0).contains(&code.round()), "{name}: block {block}: {x} is not a 4-bit code of scale {scale}");
                assert_eq!(*y, d * code.round(), "{name}: block {block}");
            }
        }
        checked += 1;
    }
    assert!(file.tensors().iter().filter(|t| t.ty == GgmlType::Q4_0).count() >= checked, "{checked} matrices");
    assert!(checked > 2 * 7, "{checked} matrices checked: 7 per layer and the LM head");
    let d = relative(&logits_of(&back, &FORM_IDS), &logits_of(&onnx, &FORM_IDS));
    println!("genai-int4 written as Q4_0: {checked} matrices of the same 4-bit codes; logits {d:.1e} from the ONNX model's (the scales in f16)");
    assert!(d < 1e-2, "{d}");
}

/// llama.cpp loads ONNX forms written as F32 GGUF — torch's TorchScript export as it is
/// (`llama`), onnxruntime-genai's pruned by half (layers of their own widths, `deci`) — and
/// computes the logits prunec computes on the file, within 1e-4 relative RMS.
#[test]
fn llama_cpp_runs_onnx_forms_written_as_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = FORM_IDS.map(|i| i.to_string()).join(",");
    for (rel, prune) in [("torch/ts17.onnx", false), ("genai-fp32/model.onnx", true), ("optimum/model.onnx", true)] {
        let onnx = load(&fixture("onnx-forms").join(rel));
        let model = if prune { pruned_by_half(onnx) } else { onnx };
        let out = dir.path().join(format!("{}.gguf", rel.replace('/', "-")));
        write_onnx(&model, &out, Some(GgmlType::F32), form_tokenizer(rel).as_deref());
        let arch = GgufFile::open(&out).unwrap().get_str("general.architecture").unwrap().to_string();
        let Some(json) = llama_cpp("logits", &out, &["--tokens", &tokens, "--kv-type", "f32"]) else { return };
        let theirs: Vec<f32> = json["logits"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32)).collect();
        let ours = logits_of(&load(&out), &FORM_IDS);
        let before = logits_of(&model, &FORM_IDS);
        let rms = |v: &mut dyn Iterator<Item = f32>| -> f32 {
            let (s, n) = v.fold((0.0f64, 0usize), |(s, n), x| (s + f64::from(x) * f64::from(x), n + 1));
            (s / n.max(1) as f64).sqrt() as f32
        };
        assert_eq!(ours.len(), theirs.len(), "{rel}");
        let relative_rms = rms(&mut ours.iter().zip(&theirs).map(|(a, b)| a - b)) / rms(&mut ours.iter().copied());
        println!("{rel} (`{arch}`): llama.cpp's logits {relative_rms:.2e} relative RMS from prunec's; prunec's of the file {:.1e} from the ONNX model's", relative(&ours, &before));
        assert!(relative_rms <= 1e-4, "{rel}: {relative_rms:.2e}");
    }
}

/// `-o FILE.gguf` with ONNX inputs on the command line: the default allocation (sensitivity)
/// gives layers of their own widths (`deci`); a torch export, which has no tokenizer beside
/// it, takes `--tokenizer` and says what is missing without it; a graph that is not a LLaMA
/// (the SiLU of its MLPs made a tanh: prunec reads and runs it, but it is no LLaMA) is refused
/// naming the file and what was not recognised, and nothing is written.
#[test]
fn onnx_to_gguf_from_the_command_line() {
    use common::{assert_clean_failure, prunec, texts};
    let dir = tempfile::tempdir().unwrap();
    let run = |model: &Path, out: &Path, extra: &[&str]| {
        let mut a = vec![model.to_str().unwrap(), "--pass", "group,score,prune", "--importance", "l2", "--ratio", "0.5", "-o", out.to_str().unwrap()];
        a.extend_from_slice(extra);
        prunec(&a)
    };
    let optimum = fixture("onnx-forms/optimum/model.onnx");
    let out = dir.path().join("optimum.gguf");
    let ok = run(&optimum, &out, &[]);
    assert!(ok.status.success(), "{}", texts(&ok).1);
    assert_eq!(GgufFile::open(&out).unwrap().get_str("general.architecture").unwrap(), "deci", "sensitivity allocation: layers of their own widths");

    let ts = fixture("onnx-forms/torch/ts17.onnx");
    let out = dir.path().join("ts17.gguf");
    assert_clean_failure(&run(&ts, &out, &[]), &["tokenizer.json", "--tokenizer"]);
    assert!(!out.exists());
    let tok = fixture("onnx-forms/hf/tokenizer.json");
    let ok = run(&ts, &out, &["--tokenizer", tok.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", texts(&ok).1);
    assert!(GgufFile::open(&out).unwrap().get("tokenizer.ggml.tokens").is_some());

    // not a LLaMA: x·tanh(x) for SiLU's x·sigmoid(x)
    let mut file = prunec_frontends::onnx::OnnxFile::open(&ts).unwrap();
    let mut changed = 0;
    for n in file.model.graph.as_mut().unwrap().node.iter_mut().filter(|n| n.op_type == "Sigmoid") {
        n.op_type = "Tanh".into();
        changed += 1;
    }
    assert!(changed > 0, "the export computes SiLU with a Sigmoid");
    let tanh = dir.path().join("tanh.onnx");
    prunec_frontends::onnx::write_model(&file.model, &tanh, None).unwrap();
    let runs = prunec(&[tanh.to_str().unwrap(), "--pass", "group"]);
    assert!(runs.status.success(), "prunec reads it: {}", texts(&runs).1);
    let out = dir.path().join("tanh.gguf");
    assert_clean_failure(&run(&tanh, &out, &["--tokenizer", tok.to_str().unwrap()]), &["tanh.onnx", "not recognised as a LLaMA-family decoder", "SiLU"]);
    assert!(!out.exists(), "nothing written");
}

/// The text the SentencePiece tokenizers are compared on: the first lines of
/// `tests/fixtures/smollm2/public.txt` (about 4 KB) and a line of tabs, a carriage return,
/// runs of spaces and non-ASCII characters of 2, 3 and 4 bytes (byte fallback).
fn sentencepiece_text() -> String {
    let text = std::fs::read_to_string(fixture("smollm2/public.txt")).unwrap();
    let mut out: String = text.lines().take(60).map(|l| format!("{l}\n")).collect();
    out.push_str("\tcafé —  ’quoted’\t\t日本\r\n  🙂 x  \n");
    out
}

/// An HF folder whose `tokenizer.json` is a SentencePiece-style BPE (byte fallback, `▁`) is
/// written with llama.cpp's `llama` vocabulary (scores, types, `add_space_prefix`): Gemma 3
/// (no space prefix, `tests/fixtures/sentencepiece`) and LLaMA (`Prepend("▁")`,
/// `tests/fixtures/sentencepiece/llama`). On [`sentencepiece_text`] llama.cpp's ids are prunec's
/// (all 1731 and 1732 of them, the BOS added by both), prunec reads the same ids back from the
/// file, and llama.cpp's logits on the first 64 of them are prunec's, as relative RMS: Gemma 3
/// within 1e-3 (measured 2.3e-4: llama.cpp's f16 GELU table), LLaMA within 1e-4 (1.1e-6).
#[test]
fn sentencepiece_tokenizers_are_written_as_llama_vocabularies() {
    use prunec_frontends::tokenizer::Tokenizer;
    let dir = tempfile::tempdir().unwrap();
    let text = sentencepiece_text();
    let text_file = dir.path().join("text.txt");
    std::fs::write(&text_file, &text).unwrap();
    for (name, tokenizer, arch, add_space_prefix, unk, tol) in [("gemma3-tiny", "sentencepiece", "gemma3", false, 3, 1e-3f32), ("llama-gqa", "sentencepiece/llama", "llama", true, 0, 1e-4)] {
        let hf = common::copy_fixture(name);
        std::fs::copy(fixture(tokenizer).join("tokenizer.json"), hf.path().join("tokenizer.json")).unwrap();
        let model = load(hf.path());
        let out = dir.path().join(format!("{name}.gguf"));
        write(&model, &out, None);
        let file = GgufFile::open(&out).unwrap();
        assert_eq!(file.get_str("general.architecture").unwrap(), arch);
        assert_eq!(file.get_str("tokenizer.ggml.model").unwrap(), "llama");
        assert_eq!(file.get_bool("tokenizer.ggml.add_space_prefix").unwrap(), add_space_prefix, "{name}");
        let ours = Tokenizer::for_model(hf.path()).unwrap().encode_with_special(&text).unwrap();
        assert_eq!(ours[0], 1, "{name}: the BOS first");
        assert!(!ours.contains(&unk), "{name}: an unknown token (a byte without its token)");
        assert_eq!(file.get_usize("tokenizer.ggml.unknown_token_id").unwrap(), unk as usize, "{name}");
        let back = Tokenizer::from_gguf(&file).unwrap().encode_with_special(&text).unwrap();
        assert_eq!(back, ours, "{name}: prunec reads other ids back from the GGUF file");
        let Some(json) = llama_cpp("tokenize", &out, &["--text", text_file.to_str().unwrap(), "--add-special"]) else { return };
        let theirs: Vec<u32> = json["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let same = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
        println!("{name}: llama.cpp's ids are prunec's for the first {same} of {} ({} in llama.cpp)", ours.len(), theirs.len());
        assert_eq!(theirs, ours, "{name}: llama.cpp tokenizes otherwise from token {same}");
        let ids = &ours[..64];
        let tokens = ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let Some(theirs) = llama_cpp_logits(&out, &tokens) else { return };
        let relative = relative_rms(&logits_of(&model, ids), &theirs);
        println!("{name}: llama.cpp's logits on those ids differ from prunec's by {relative:.2e} relative RMS");
        assert!(relative <= tol, "{name}: llama.cpp's logits differ from prunec's by {relative:.2e} relative RMS");
    }
}

/// The tiny Phi-3 HF folder (its window of 5 taken out: llama.cpp 0.3.36 disables Phi-3's
/// sliding window, and the tokens are 7), unpruned and pruned — by half, heads and channels
/// with one global threshold (MLPs of different widths); query heads by half; query heads of
/// layer 1 alone (layers of different head counts) — written as F32 GGUF (`phi3`: every layer
/// padded to q as wide as the hidden state and one count of key/value heads and channels, the
/// fused `attn_qkv` and `ffn_up` padded part by part): prunec reads each back computing its
/// logits (within 1e-5 relative RMS; measured 0 to 4.2e-7), and llama.cpp computes them on the
/// same tokens within 1e-4 relative RMS (measured 6.6e-7–9.8e-7: summation orders). The window
/// is written with a note; hidden channels pruned are refused, naming the file; a GGUF input's
/// metadata comes along. A Q8_0 file pruned by heads has its fused tensors copied block for
/// block between zero rows (18 tensors copied; the 3 `ffn_down`, whose kept columns are not
/// whole blocks, quantized again: read back within 2e-2, measured 4.8e-3), and llama.cpp
/// computes its logits within 5e-2 (measured 3.1e-2: it quantizes the activations to Q8_0).
#[test]
fn phi3_written_as_gguf_runs_in_llama_cpp_as_in_prunec() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = [250u32, 3, 97, 43, 236, 26, 66].map(|i| i.to_string()).join(",");
    let hf = common::copy_fixture("phi3");
    common::byte_tokenizer(hf.path());
    let windowed = load(hf.path());
    let arch = prunec_frontends::arch::of(&windowed).unwrap();
    let notes = arch.gguf_plan(&windowed, 1).unwrap().notes;
    assert!(notes.iter().any(|n| n.contains("disables Phi-3's sliding window of 5")), "{notes:?}");
    // a GGUF input (llama.cpp's converter's layout): its metadata comes along, the pruned file reads back
    let input = fixture("gguf/phi3.gguf");
    let from_gguf = pruned_by(&input, Mode::Block, true, Gqa::KvHeads, 0.5);
    let out = dir.path().join("phi3-from-gguf.gguf");
    write(&from_gguf, &out, None);
    let file = GgufFile::open(&out).unwrap();
    assert_eq!(file.get("general.name"), GgufFile::open(&input).unwrap().get("general.name"));
    assert_eq!(file.get_usize("phi3.attention.sliding_window").unwrap(), 5);
    let back = relative_rms(&logits(&from_gguf), &logits(&load(&out)));
    assert!(back < 1e-5, "from GGUF: read back, logits differ by {back:.2e} relative RMS");
    // hidden channels pruned: q can no longer be as wide as the hidden state, refused
    let narrow = pruned_by(hf.path(), Mode::Channel, false, Gqa::KvHeads, 0.3);
    let hidden = narrow.params.get("model.embed_tokens.weight").unwrap().shape[1];
    assert!(hidden < 64, "hidden channels were not pruned");
    let err = arch.gguf_plan(&narrow, 1).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("q as wide as the hidden state") && err.contains("config.json"), "{err}");
    let config = hf.path().join("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["sliding_window"] = serde_json::Value::Null;
    std::fs::write(&config, json.to_string()).unwrap();
    for (name, ratio, global, gqa) in [("unpruned", 0.0, false, Gqa::KvHeads), ("block", 0.5, true, Gqa::KvHeads), ("query", 0.5, false, Gqa::QueryHeads), ("query-layer-1", 0.5, false, Gqa::QueryHeads)] {
        let model = match name {
            "unpruned" => load(hf.path()),
            // query heads of layer 1 alone: layers of different head counts
            "query-layer-1" => pruned_with(hf.path(), &PruneOptions { attn_layers: Some(1..2), ..uniform_query(0.25) }),
            _ => pruned_by(hf.path(), Mode::Block, global, gqa, ratio),
        };
        let rows = |m: &str| (0..3).map(|l| model.params.get(&format!("model.layers.{l}.{m}.weight")).map_or(0, |p| p.shape[0])).collect::<Vec<_>>();
        let (qkv, gate_up) = (rows("self_attn.qkv_proj"), rows("mlp.gate_up_proj"));
        match name {
            "block" => assert!(gate_up.windows(2).any(|w| w[0] != w[1]), "{name}: widths {gate_up:?}"),
            "query-layer-1" => assert!(qkv.windows(2).any(|w| w[0] != w[1]), "{name}: widths {qkv:?}"),
            _ => {}
        }
        let out = dir.path().join(format!("phi3-{name}.gguf"));
        write(&model, &out, None);
        let file = GgufFile::open(&out).unwrap();
        assert_eq!(file.get_str("general.architecture").unwrap(), "phi3");
        assert_eq!(file.get_usize("phi3.attention.head_count").unwrap(), 4, "{name}: q as wide as the hidden state");
        assert_eq!(file.get_usize("phi3.rope.dimension_count").unwrap(), 12);
        assert!(file.get("tokenizer.ggml.tokens").is_some(), "{name}: the tokenizer");
        let ours = logits(&model);
        let back = relative_rms(&ours, &logits(&load(&out)));
        assert!(back < 1e-5, "{name}: read back, logits differ by {back:.2e} relative RMS");
        let Some(theirs) = llama_cpp_logits(&out, &tokens) else { continue };
        let relative = relative_rms(&ours, &theirs);
        println!("phi3 {name} (qkv rows {qkv:?}, gate_up rows {gate_up:?}): read back {back:.2e}, llama.cpp {relative:.2e} relative RMS from prunec's logits");
        assert!(relative <= 1e-4, "{name}: llama.cpp's logits differ from prunec's by {relative:.2e} relative RMS");
    }
    // a Q8_0 file pruned by heads: its fused `attn_qkv` rows (heads of 16 in blocks of 32 along the
    // hidden state) are copied block for block between zero rows; read back as the pruned model
    let q8 = dir.path().join("phi3-q8_0.gguf");
    write(&load(hf.path()), &q8, Some(GgmlType::Q8_0));
    let pruned_q8 = pruned_by(&q8, Mode::Block, true, Gqa::KvHeads, 0.5);
    let out = dir.path().join("phi3-q8_0-pruned.gguf");
    let written = write(&pruned_q8, &out, None);
    assert!(written.copied >= 3, "the attn_qkv tensors are copied: {} copied", written.copied);
    let back = relative_rms(&logits(&pruned_q8), &logits(&load(&out)));
    println!("phi3 Q8_0 pruned: {} tensors copied, {} quantized again; read back {back:.2e} relative RMS", written.copied, written.quantized);
    assert!(back < 2e-2, "Q8_0: read back, logits differ by {back:.2e} relative RMS");
    let Some(theirs) = llama_cpp_logits(&out, &tokens) else { return };
    let relative = relative_rms(&logits(&pruned_q8), &theirs);
    println!("phi3 Q8_0 pruned: llama.cpp {relative:.2e} relative RMS from prunec's logits");
    assert!(relative <= 5e-2, "Q8_0: llama.cpp's logits differ from prunec's by {relative:.2e} relative RMS");
}

/// The tiny ChatGLM2 HF folder, unpruned and pruned — by half, heads and channels with one
/// global threshold (MLPs of different widths); query heads of layer 1 alone (layers of
/// different head counts) — written as F32 GGUF (`chatglm`: every layer padded to q as wide as
/// the hidden state and one count of key/value heads and channels, the fused `attn_qkv`, its
/// bias and `ffn_up` padded part by part): prunec reads each back computing its logits (within
/// 1e-5 relative RMS; measured 0), and llama.cpp computes them on the same tokens within 1e-4
/// relative RMS (measured 8.5e-7–1.24e-6: summation orders). A GGUF input's metadata comes
/// along; hidden channels pruned are refused, naming the file.
#[test]
fn chatglm2_written_as_gguf_runs_in_llama_cpp_as_in_prunec() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = [250u32, 3, 97, 43, 236, 26, 66].map(|i| i.to_string()).join(",");
    let hf = common::copy_fixture("chatglm2-6b");
    common::byte_tokenizer(hf.path());
    // a GGUF input (llama.cpp's converter's layout): its metadata comes along, the pruned file reads back
    let input = fixture("gguf/chatglm2-6b.gguf");
    let from_gguf = pruned_by(&input, Mode::Block, true, Gqa::KvHeads, 0.5);
    let out = dir.path().join("chatglm2-from-gguf.gguf");
    write(&from_gguf, &out, None);
    let file = GgufFile::open(&out).unwrap();
    let input_file = GgufFile::open(&input).unwrap();
    for key in ["general.name", "chatglm.context_length"] {
        assert_eq!(file.get(key), input_file.get(key), "{key}");
    }
    let back = relative_rms(&logits(&from_gguf), &logits(&load(&out)));
    assert!(back < 1e-5, "from GGUF: read back, logits differ by {back:.2e} relative RMS");
    // hidden channels pruned: q can no longer be as wide as the hidden state, refused
    let narrow = pruned_by(hf.path(), Mode::Channel, false, Gqa::KvHeads, 0.3);
    assert!(narrow.params.get("transformer.embedding.word_embeddings.weight").unwrap().shape[1] < 64, "hidden channels were not pruned");
    let arch = prunec_frontends::arch::of(&narrow).unwrap();
    let err = arch.gguf_plan(&narrow, 1).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("q as wide as the hidden state") && err.contains("config.json"), "{err}");
    for name in ["unpruned", "block", "query-layer-1"] {
        let model = match name {
            "unpruned" => load(hf.path()),
            "block" => pruned_by(hf.path(), Mode::Block, true, Gqa::KvHeads, 0.5),
            // query heads of layer 1 alone: layers of different head counts
            _ => pruned_with(hf.path(), &PruneOptions { attn_layers: Some(1..2), ..uniform_query(0.25) }),
        };
        let rows = |m: &str| (0..4).map(|l| model.params.get(&format!("transformer.encoder.layers.{l}.{m}.weight")).map_or(0, |p| p.shape[0])).collect::<Vec<_>>();
        let (qkv, up) = (rows("self_attention.query_key_value"), rows("mlp.dense_h_to_4h"));
        match name {
            "block" => assert!(up.windows(2).any(|w| w[0] != w[1]), "{name}: widths {up:?}"),
            "query-layer-1" => assert!(qkv.windows(2).any(|w| w[0] != w[1]), "{name}: widths {qkv:?}"),
            _ => {}
        }
        let out = dir.path().join(format!("chatglm2-{name}.gguf"));
        write(&model, &out, None);
        let file = GgufFile::open(&out).unwrap();
        assert_eq!(file.get_str("general.architecture").unwrap(), "chatglm");
        assert_eq!(file.get_usize("chatglm.attention.head_count").unwrap(), 4, "{name}: q as wide as the hidden state");
        assert!(file.tensor_info("blk.0.attn_qkv.bias").is_some());
        let ours = logits(&model);
        let back = relative_rms(&ours, &logits(&load(&out)));
        assert!(back < 1e-5, "{name}: read back, logits differ by {back:.2e} relative RMS");
        let Some(theirs) = llama_cpp_logits(&out, &tokens) else { continue };
        let relative = relative_rms(&ours, &theirs);
        println!("chatglm2 {name} (qkv rows {qkv:?}, dense_h_to_4h rows {up:?}): read back {back:.2e}, llama.cpp {relative:.2e} relative RMS from prunec's logits");
        assert!(relative <= 1e-4, "{name}: llama.cpp's logits differ from prunec's by {relative:.2e} relative RMS");
    }
}

/// Block-wise pruning of query heads (taken unevenly from their key/value heads) by `ratio`,
/// layers alike.
fn uniform_query(ratio: f64) -> PruneOptions {
    PruneOptions { amount: Amount::Ratio(ratio), mode: Mode::Block, attn_layers: None, mlp_layers: None, allocate: Allocate::Uniform, gqa: Gqa::QueryHeads, round_to: 1, uniform: false }
}

