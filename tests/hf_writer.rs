//! The HF writer: models written as HF folders read back as the same model (parameters bit
//! for bit, the same graph), in f16, in shards, from GGUF, and with per-layer widths.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{copy_fixture, fixture};
use prunec_backends::hf_writer::{write_hf_folder, HfWriteOptions};
use prunec_backends::stream_writer::Dtype;
use prunec_backends::BackendError;
use prunec_frontends::arch::llama::{hf_config, LAYER_WIDTHS_KEY};
use prunec_ir::Model;
use safetensors::tensor::TensorView;

fn load(path: &Path) -> Model {
    prunec_frontends::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes `model` to `out` with its own configuration, the fixture's generation config
/// (and a tokenizer.json that does not exist, skipped), and nothing else.
fn write(model: &Model, out: &Path, options: HfWriteOptions) -> PathBuf {
    let config = hf_config(model).unwrap();
    let copy = [fixture("llama-gqa/generation_config.json"), fixture("llama-gqa/tokenizer.json")];
    write_hf_folder(model, &config, &copy, &[], out, &[&model.info.source], options).unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The printed IR without its header line (which names the source).
fn body(model: &Model) -> String {
    prunec_ir::print(model).unwrap().lines().skip(1).collect::<Vec<_>>().join("\n")
}

/// Same parameter names and shapes, and values equal after `round`.
fn assert_same_params(got: &Model, want: &Model, round: fn(f32) -> f32) {
    let names = |m: &Model| m.params.iter().map(|(n, p)| (n.clone(), p.shape.clone())).collect::<Vec<_>>();
    assert_eq!(names(got), names(want));
    for (name, _) in want.params.iter() {
        let (g, w) = (got.params.read_f32(name).unwrap(), want.params.read_f32(name).unwrap());
        assert!(g.iter().zip(w.iter()).all(|(g, w)| g.to_bits() == round(*w).to_bits()), "{name} differs");
    }
}

#[test]
fn written_folder_reloads_as_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = load(&fixture("llama-gqa"));
    let out = write(&model, &dir.path().join("out"), HfWriteOptions::default());
    assert_eq!(files(&out), ["config.json", "generation_config.json", "model.safetensors"]);
    assert_eq!(files(dir.path()), ["out"], "no temporary folder left beside the output");
    assert_eq!(json(&out.join("config.json")), json(&fixture("llama-gqa/config.json")));
    assert_eq!(std::fs::read(out.join("generation_config.json")).unwrap(), std::fs::read(fixture("llama-gqa/generation_config.json")).unwrap());
    let back = load(&out);
    assert_same_params(&back, &model, |v| v);
    assert_eq!(body(&back), body(&model));
}

#[test]
fn f16_output_is_the_model_rounded_to_f16() {
    let dir = tempfile::tempdir().unwrap();
    let model = load(&fixture("llama-gqa"));
    let out = write(&model, &dir.path().join("f16"), HfWriteOptions { dtype: Dtype::F16, ..Default::default() });
    assert_eq!(json(&out.join("config.json"))["dtype"], "float16");
    let back = load(&out);
    assert_same_params(&back, &model, |v| half::f16::from_f32(v).to_f32());
    for (name, _) in model.params.iter() {
        let (g, w) = (back.params.read_f32(name).unwrap(), model.params.read_f32(name).unwrap());
        // f16 keeps 11 significant bits: at most half an ulp, 2^-11 relative, off subnormals
        assert!(g.iter().zip(w.iter()).all(|(g, w)| (g - w).abs() <= w.abs() * 2f32.powi(-11) + 6e-8), "{name}");
    }
}

#[test]
fn small_shards_give_several_files_and_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let model = load(&fixture("llama-gqa"));
    // 776 KB of f32 weights (the 64 KiB embedding is the largest tensor) in shards of 200 KB
    let out = write(&model, &dir.path().join("sharded"), HfWriteOptions { max_shard_bytes: 200_000, ..Default::default() });
    let shards: Vec<String> = files(&out).into_iter().filter(|f| f.starts_with("model-")).collect();
    assert!(shards.len() >= 4, "{shards:?}");
    let n = shards.len();
    assert_eq!(shards[0], format!("model-00001-of-{n:05}.safetensors"));
    assert!(!out.join("model.safetensors").exists());
    let index = json(&out.join("model.safetensors.index.json"));
    let map = index["weight_map"].as_object().unwrap();
    assert_eq!(map.len(), model.params.len());
    let mut total = 0u64;
    for shard in &shards {
        let bytes = std::fs::read(out.join(shard)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let size: u64 = st.tensors().iter().map(|(_, t)| t.data().len() as u64).sum();
        assert!(size <= 200_000, "{shard}: {size} bytes");
        assert!(st.names().iter().all(|name| map[*name] == shard.as_str()));
        total += size;
    }
    assert_eq!(index["metadata"]["total_size"], total);
    assert_eq!(index["metadata"]["total_parameters"], model.params.numel());
    let back = load(&out);
    assert_same_params(&back, &model, |v| v);
    assert_eq!(body(&back), body(&model));
}

#[test]
fn gguf_written_as_hf_is_the_hf_model() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = load(&fixture("gguf/llama-gqa.gguf"));
    let tokenizer = [("tokenizer.json".to_string(), b"{\"version\": \"1.0\"}".to_vec())];
    let config = hf_config(&gguf).unwrap();
    let out = dir.path().join("from-gguf");
    write_hf_folder(&gguf, &config, &[], &tokenizer, &out, &[&gguf.info.source], HfWriteOptions::default()).unwrap();
    assert_eq!(files(&out), ["config.json", "model.safetensors", "tokenizer.json"]);
    let back = load(&out);
    let hf = load(&fixture("llama-gqa"));
    assert_same_params(&back, &hf, |v| v);
    assert_eq!(body(&back), body(&hf));
    // the configuration the GGUF metadata gives, as the HF frontend reads it
    let read = |dir: &Path| {
        let json = prunec_frontends::hf::read_config(dir).unwrap();
        prunec_frontends::arch::llama::LlamaConfig::from_hf_json(dir, &json).unwrap()
    };
    assert_eq!(read(&out), read(&fixture("llama-gqa")));
    let written = json(&out.join("config.json"));
    assert_eq!(written["architectures"], serde_json::json!(["LlamaForCausalLM"]));
    assert_eq!(written["head_dim"], 8);
}

/// Layer widths: (query heads, key/value heads, MLP channels).
type Widths = (usize, usize, usize);

/// An HF folder cut by hand from `llama-gqa` (8 query heads of 8 over 2 key/value heads,
/// 176 MLP channels, 4 layers): in layer `l`, the first `kv` key/value heads with the first
/// `heads` query heads (whole groups of 4: query head `j` uses key/value head `j / 4`) and the
/// first `mlp` channels. The config lists the widths under `prunec_layer_widths` unless all
/// layers are equal (a stock LLaMA config then).
fn pruned_folder(widths: &[Widths; 4]) -> tempfile::TempDir {
    let dir = copy_fixture("llama-gqa");
    let bytes = std::fs::read(fixture("llama-gqa/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let hd = 8;
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let values: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        let layer = name.strip_prefix("model.layers.").and_then(|r| r.split('.').next()).map(|l| l.parse::<usize>().unwrap());
        let (rows, cols) = match layer {
            None => (shape[0], shape.get(1).copied()),
            Some(l) => {
                let (heads, kv, mlp) = widths[l];
                let module = name.rsplit('.').nth(1).unwrap();
                match module {
                    "q_proj" => (heads * hd, shape.get(1).copied()),
                    "k_proj" | "v_proj" => (kv * hd, shape.get(1).copied()),
                    "o_proj" => (shape[0], Some(heads * hd)),
                    "gate_proj" | "up_proj" => (mlp, shape.get(1).copied()),
                    "down_proj" => (shape[0], Some(mlp)),
                    _ => (shape[0], shape.get(1).copied()),
                }
            }
        };
        let (new_shape, kept): (Vec<usize>, Vec<f32>) = match cols {
            None => (vec![rows], values[..rows].to_vec()),
            Some(c) => {
                let width = shape[1];
                (vec![rows, c], (0..rows).flat_map(|r| values[r * width..r * width + c].to_vec()).collect())
            }
        };
        tensors.insert(name, (new_shape, kept.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, (s, d))| (n.clone(), TensorView::new(Dtype::F32, s.clone(), d).unwrap())).collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();

    let mut config = json(&fixture("llama-gqa/config.json"));
    let max = |f: fn(&Widths) -> usize| widths.iter().map(f).max().unwrap();
    config["num_attention_heads"] = max(|w| w.0).into();
    config["num_key_value_heads"] = max(|w| w.1).into();
    config["intermediate_size"] = max(|w| w.2).into();
    if widths.iter().any(|w| w != &widths[0]) {
        config[LAYER_WIDTHS_KEY] = widths
            .iter()
            .map(|&(h, kv, m)| serde_json::json!({"num_attention_heads": h, "num_key_value_heads": kv, "intermediate_size": m}))
            .collect();
    }
    std::fs::write(dir.path().join("config.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    dir
}

fn layer_widths(config: &serde_json::Value) -> Vec<Widths> {
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap() as usize;
    config[LAYER_WIDTHS_KEY]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (n(w, "num_attention_heads"), n(w, "num_key_value_heads"), n(w, "intermediate_size")))
        .collect()
}

#[test]
fn layers_of_different_widths_round_trip() {
    // layer 1: one key/value head with its 4 query heads; layer 2: 100 MLP channels
    let widths = [(8, 2, 176), (4, 1, 176), (8, 2, 100), (8, 2, 176)];
    let input = pruned_folder(&widths);
    let model = load(input.path());
    let shape = |m: &Model, n: &str| m.params.get(n).unwrap().shape.clone();
    assert_eq!(shape(&model, "model.layers.1.self_attn.q_proj.weight"), [32, 64]);
    assert_eq!(shape(&model, "model.layers.1.self_attn.o_proj.weight"), [64, 32]);
    assert_eq!(shape(&model, "model.layers.2.mlp.down_proj.weight"), [64, 100]);

    let config = hf_config(&model).unwrap();
    assert_eq!(layer_widths(&config), widths);
    assert_eq!((config["num_attention_heads"].as_u64(), config["num_key_value_heads"].as_u64()), (Some(8), Some(2)));
    assert_eq!((config["intermediate_size"].as_u64(), config["head_dim"].as_u64()), (Some(176), Some(8)));

    let dir = tempfile::tempdir().unwrap();
    let out = write(&model, &dir.path().join("out"), HfWriteOptions::default());
    assert_eq!(layer_widths(&json(&out.join("config.json"))), widths);
    let back = load(&out);
    assert_same_params(&back, &model, |v| v);
    assert_eq!(body(&back), body(&model));

    // the runtime runs layers of their own widths, and the written model is the same model
    use prunec_backends::runtime::{cpu, Cpu, Executor};
    let logits = |m: &Model| -> Vec<f32> {
        let exec = Executor::<Cpu>::new(m, &cpu()).unwrap();
        exec.forward(exec.ids(&[vec![1, 5, 9, 200, 3]]).unwrap()).unwrap().into_data().into_vec().unwrap()
    };
    let (a, b) = (logits(&model), logits(&back));
    assert!(a.iter().all(|v| v.is_finite()));
    assert_eq!(a, b);
}

#[test]
fn equal_widths_give_a_stock_config() {
    let widths = [(4, 1, 100); 4];
    let input = pruned_folder(&widths);
    let model = load(input.path());
    let config = hf_config(&model).unwrap();
    assert!(config.get(LAYER_WIDTHS_KEY).is_none(), "{config}");
    let get = |k: &str| config[k].as_u64().unwrap();
    // head_dim stays 8 although hidden / heads = 16
    assert_eq!([get("num_attention_heads"), get("num_key_value_heads"), get("intermediate_size")], [4, 1, 100]);
    assert_eq!([get("head_dim"), get("hidden_size")], [8, 64]);
    let dir = tempfile::tempdir().unwrap();
    let back = load(&write(&model, &dir.path().join("out"), HfWriteOptions::default()));
    assert_same_params(&back, &model, |v| v);
    assert_eq!(body(&back), body(&model));
}

/// Models pruned by the `prune` pass — heads and channels per layer with one global
/// threshold (layers of different widths), and hidden channels — write and reload as the
/// same model, computing the same logits.
#[test]
fn models_pruned_by_the_prune_pass_round_trip() {
    use prunec_backends::runtime::{cpu, Cpu, Executor};
    use prunec_passes::prune::{apply, select, Allocate, Amount, Gqa, Mode, PruneOptions};
    use prunec_passes::score::{score, Aggregation, Importance};
    let logits = |m: &Model| -> Vec<f32> {
        let exec = Executor::<Cpu>::new(m, &cpu()).unwrap();
        exec.forward(exec.ids(&[vec![250, 3, 97, 43, 236, 26, 66]]).unwrap()).unwrap().into_data().into_vec().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    for (k, (mode, global)) in [(Mode::Block, true), (Mode::Channel, false)].into_iter().enumerate() {
        let mut model = load(&fixture("llama-gqa"));
        prunec_passes::run_group(&mut model).unwrap();
        let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
        let opts = PruneOptions { amount: Amount::Ratio(0.3), mode, attn_layers: None, mlp_layers: None, allocate: if global { Allocate::Sensitivity } else { Allocate::Uniform }, gqa: Gqa::KvHeads, round_to: 1, uniform: false };
        let selection = select(&model, &scores, &opts).unwrap();
        apply(&mut model, &selection).unwrap();
        let config = hf_config(&model).unwrap();
        match mode {
            // one threshold across layers: here 104..110 MLP channels, one layer with 1 kv head
            Mode::Block => assert_eq!(layer_widths(&config).len(), 4, "{config}"),
            Mode::Channel => assert!(config["hidden_size"].as_u64().unwrap() < 64, "{config}"),
            Mode::Layer => unreachable!("not in this loop; see tests/prune.rs"),
        }
        let out = write(&model, &dir.path().join(format!("pruned-{k}")), HfWriteOptions::default());
        let back = load(&out);
        assert_same_params(&back, &model, |v| v);
        let (a, b) = (logits(&model), logits(&back));
        let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{mode:?}: written model's logits differ by {diff}");
    }
}

#[test]
fn existing_output_and_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = load(&fixture("llama-gqa"));
    let config = hf_config(&model).unwrap();
    let out = dir.path().join("taken");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let err = write_hf_folder(&model, &config, &[], &[], &out, &[], HfWriteOptions::default()).unwrap_err();
    assert!(matches!(err, BackendError::OutputExists { .. }), "{err}");
    assert!(err.to_string().contains("taken"), "{err}");
    assert_eq!(files(&out), ["keep.txt"]);
    // with overwrite, a folder prunec did not write is still kept (issue 14); one it wrote is replaced
    let overwrite = HfWriteOptions { overwrite: true, ..Default::default() };
    let err = write_hf_folder(&model, &config, &[], &[], &out, &[], overwrite).unwrap_err();
    assert!(err.to_string().contains("not an earlier prunec output"), "{err}");
    assert_eq!(files(&out), ["keep.txt"]);
    let ours = dir.path().join("ours");
    write_hf_folder(&model, &config, &[], &[], &ours, &[], HfWriteOptions::default()).unwrap();
    write_hf_folder(&model, &config, &[], &[], &ours, &[], overwrite).unwrap();
    assert_eq!(files(&ours), ["config.json", "model.safetensors"]);

    // the input folder itself, even with overwrite
    let input = copy_fixture("llama-gqa");
    let before = files(input.path());
    let model = load(input.path());
    let opts = HfWriteOptions { overwrite: true, ..Default::default() };
    let err = write_hf_folder(&model, &config, &[], &[], input.path(), &[input.path()], opts).unwrap_err();
    assert!(matches!(err, BackendError::WouldOverwriteInput { .. }), "{err}");
    // nor a folder holding a file to copy
    let copy = [input.path().join("generation_config.json")];
    let err = write_hf_folder(&model, &config, &copy, &[], input.path(), &[], opts).unwrap_err();
    assert!(matches!(err, BackendError::WouldOverwriteInput { .. }), "{err}");
    assert_eq!(files(input.path()), before);
    assert_same_params(&load(input.path()), &load(&fixture("llama-gqa")), |v| v);
}

/// Writes `model` under `dir`, runs prunec's runtime on the golden input ids, and has
/// `tests/fixtures/hf_writer_transformers.py` load the folder with transformers and compare.
fn check_with_transformers(model: &Model, dir: &Path, name: &str) {
    let out = write(model, &dir.join(name), HfWriteOptions::default());
    check_folder_with_transformers(&out, dir, name);
}

/// Runs prunec's runtime on the written folder `out` with the golden input ids, and has
/// `tests/fixtures/hf_writer_transformers.py` load it with transformers and compare (files
/// under `dir`, named after `name`).
fn check_folder_with_transformers(out: &Path, dir: &Path, name: &str) {
    use prunec_backends::runtime::{cpu, Cpu, Executor};
    let golden = std::fs::read(fixture("llama-gqa/golden.safetensors")).unwrap();
    let golden = safetensors::SafeTensors::deserialize(&golden).unwrap();
    let ids_view = golden.tensor("input_ids").unwrap();
    let seq = ids_view.shape()[1];
    let flat: Vec<u32> = ids_view.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32).collect();
    let ids: Vec<Vec<u32>> = flat.chunks(seq).map(<[u32]>::to_vec).collect();
    let exec = Executor::<Cpu>::new(&load(out), &cpu()).unwrap();
    let logits = exec.forward(exec.ids(&ids).unwrap()).unwrap();
    let shape = logits.dims().to_vec();
    let values: Vec<f32> = logits.into_data().into_vec().unwrap();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let expected = dir.join(format!("{name}.prunec.safetensors"));
    let views = [("input_ids", ids_view.clone()), ("logits", TensorView::new(Dtype::F32, shape, &bytes).unwrap())];
    safetensors::serialize_to_file(views, None, &expected).unwrap();

    let python = std::env::var("PRUNEC_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = fixture("hf_writer_transformers.py");
    let run = std::process::Command::new(&python).arg(&script).arg(out).arg(&expected).output().expect("python runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    println!("{name}: {stdout}");
    assert!(run.status.success(), "{name}: {script:?} failed:\n{stdout}\n{stderr}");
}

/// transformers' `LlamaForCausalLM` loads written folders without custom code — uniformly
/// pruned layers (an explicit `head_dim` ≠ hidden / heads), a GGUF file's model with the
/// config its metadata gives — and its logits are prunec's. Needs Python with torch and
/// transformers: `PRUNEC_PYTHON=/path/to/python cargo test --test hf_writer -- --ignored`.
#[test]
#[ignore = "needs Python with torch and transformers (PRUNEC_PYTHON)"]
fn transformers_loads_written_folders() {
    let dir = tempfile::tempdir().unwrap();
    let input = pruned_folder(&[(4, 1, 100); 4]);
    check_with_transformers(&load(input.path()), dir.path(), "uniformly-pruned");
    check_with_transformers(&load(&fixture("gguf/llama-gqa.gguf")), dir.path(), "from-gguf");
    // hidden channels pruned: a stock config whose rms_norm_eps carries the norms' rescaling
    use prunec_passes::prune::{apply, select, Allocate, Amount, Gqa, Mode, PruneOptions};
    use prunec_passes::score::{score, Aggregation, Importance};
    let mut model = load(&fixture("llama-gqa"));
    prunec_passes::run_group(&mut model).unwrap();
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
    let opts = PruneOptions { amount: Amount::UnitRatio(0.25), mode: Mode::Channel, attn_layers: None, mlp_layers: None, allocate: Allocate::Uniform, gqa: Gqa::KvHeads, round_to: 1, uniform: false };
    let selection = select(&model, &scores, &opts).unwrap();
    apply(&mut model, &selection).unwrap();
    check_with_transformers(&model, dir.path(), "channel-pruned");
}

// The LLaMA-like families and Phi-3 (`scripts/make-arch-fixtures`): their own configs, written
// through the registry as `src/output.rs` writes them.

/// `model`'s HF config as its architecture writes it.
fn arch_config(model: &Model) -> serde_json::Value {
    prunec_frontends::arch::of(model).expect("a registered architecture").hf_config(model).unwrap()
}

/// Writes `model` (after its architecture's `before_writing`) with its architecture's config.
fn write_arch(model: &mut Model, out: &Path) -> PathBuf {
    prunec_frontends::arch::of(model).unwrap().before_writing(model).unwrap();
    let config = arch_config(model);
    write_hf_folder(model, &config, &[], &[], out, &[&model.info.source], HfWriteOptions::default()).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max)
}

fn logits_of(m: &Model) -> Vec<f32> {
    use prunec_backends::runtime::{cpu, Cpu, Executor};
    let exec = Executor::<Cpu>::new(m, &cpu()).unwrap();
    exec.forward(exec.ids(&[vec![250, 3, 97, 43, 236, 26, 66, 35, 81, 137, 30, 5]]).unwrap()).unwrap().into_data().into_vec().unwrap()
}

/// Unpruned, the written config is the fixture's own, and the folder reloads as the same model.
#[test]
fn llama_like_families_write_their_own_config() {
    for name in ["qwen2", "qwen3", "mistral", "phi3"] {
        let dir = tempfile::tempdir().unwrap();
        let mut model = load(&fixture(name));
        let out = write_arch(&mut model, &dir.path().join(name));
        assert_eq!(files(&out), ["config.json", "model.safetensors"]);
        let (written, original) = (json(&out.join("config.json")), json(&fixture(&format!("{name}/config.json"))));
        for (key, value) in original.as_object().unwrap() {
            // a null `head_dim` (Mistral's) is written explicitly
            if key != "dtype" && key != "transformers_version" && !(key == "head_dim" && value.is_null()) {
                assert_eq!(&written[key], value, "{name}: {key}");
            }
        }
        for key in ["attention_bias", "mlp_bias"] {
            assert_eq!(written.get(key).is_some(), original.get(key).is_some(), "{name}: {key} only where the family has it");
        }
        let back = load(&out);
        assert_eq!(back.info.architecture, name);
        assert_same_params(&back, &model, |v| v);
        assert_eq!(body(&back), body(&model));
    }
}

/// The architectures read from GGUF (`scripts/make-arch-gguf`) are written as their own HF
/// folders (Qwen2's, Qwen3's, ChatGLM's classes; Llama 3.1's scaling as a `llama3`
/// `rope_scaling` that gives the same frequencies), which reload computing the same logits as
/// the HF fixture.
#[test]
fn gguf_written_as_hf_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [("qwen2", "Qwen2ForCausalLM"), ("qwen3", "Qwen3ForCausalLM"), ("chatglm2-6b", "ChatGLMModel"), ("llama-rope", "LlamaForCausalLM")];
    for (name, class) in cases {
        let mut gguf = load(&fixture(&format!("gguf/{name}.gguf")));
        let out = write_arch(&mut gguf, &dir.path().join(name));
        let config = json(&out.join("config.json"));
        assert_eq!(config["architectures"], serde_json::json!([class]), "{name}");
        let back = load(&out);
        let hf = load(&fixture(name));
        assert_same_params(&back, &hf, |v| v);
        let diff = max_diff(&logits_of(&back), &logits_of(&hf));
        assert!(diff < 1e-5, "{name}: the folder written from GGUF computes logits {diff} away from the HF fixture's");
    }
}

/// Pruned per layer (one global threshold: layers of different widths, `prunec_layer_widths`),
/// uniformly (a stock config), by hidden channels, and by whole layers (left out, `layer_types`
/// shortened with them): each folder reloads computing the pruned model's logits.
#[test]
fn llama_like_families_round_trip_when_pruned() {
    use prunec_passes::prune::{apply, select, Allocate, Amount, Gqa, Mode, PruneOptions};
    use prunec_passes::score::{score, Aggregation, Importance};
    let dir = tempfile::tempdir().unwrap();
    for name in ["qwen2", "qwen3", "mistral", "phi3"] {
        let cases = [
            (Mode::Block, true, false, Amount::Ratio(0.3)),
            (Mode::Block, false, true, Amount::Ratio(0.3)),
            (Mode::Channel, false, false, Amount::UnitRatio(0.25)),
            (Mode::Layer, false, false, Amount::UnitRatio(0.34)),
        ];
        for (k, (mode, global, uniform, amount)) in cases.into_iter().enumerate() {
            let mut model = load(&fixture(name));
            prunec_passes::run_group(&mut model).unwrap();
            let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
            let opts = PruneOptions { amount, mode, attn_layers: None, mlp_layers: None, allocate: if global { Allocate::Sensitivity } else { Allocate::Uniform }, gqa: Gqa::KvHeads, round_to: 1, uniform };
            let selection = select(&model, &scores, &opts).unwrap();
            apply(&mut model, &selection).unwrap();
            let before = logits_of(&model);
            let out = write_arch(&mut model, &dir.path().join(format!("{name}-{k}")));
            let config = json(&out.join("config.json"));
            match (mode, uniform) {
                (Mode::Block, false) => assert!(!layer_widths(&config).is_empty(), "{name}: {config}"),
                (Mode::Block, true) => {
                    assert!(config.get(LAYER_WIDTHS_KEY).is_none(), "{name}: {config}");
                    if name == "phi3" {
                        // fused tensors written back fused, under their own names
                        let written = std::fs::read(out.join("model.safetensors")).unwrap();
                        let names: Vec<String> = safetensors::SafeTensors::deserialize(&written).unwrap().names().into_iter().map(str::to_string).collect();
                        assert!(names.iter().any(|n| n.ends_with("self_attn.qkv_proj.weight")) && names.iter().any(|n| n.ends_with("mlp.gate_up_proj.weight")), "{names:?}");
                        assert!(!names.iter().any(|n| n.contains("q_proj") || n.contains("gate_proj.")), "{names:?}");
                    }
                }
                (Mode::Channel, _) => assert_eq!(config["hidden_size"], 48, "{name}"),
                (Mode::Layer, _) => {
                    let layers = config["num_hidden_layers"].as_u64().unwrap();
                    assert!(layers < 3, "{name}: {config}");
                    if let Some(types) = config.get("layer_types") {
                        assert_eq!(types.as_array().unwrap().len() as u64, layers, "{name}");
                    }
                }
            }
            let back = load(&out);
            assert_eq!(back.info.architecture, name);
            let diff = max_diff(&logits_of(&back), &before);
            assert!(diff < 1e-5, "{name} {mode:?} uniform={uniform}: written model's logits differ by {diff}");
        }
    }
}

/// transformers (`Qwen2ForCausalLM`, `Qwen3ForCausalLM`, `MistralForCausalLM`,
/// `Phi3ForCausalLM`) loads the
/// uniformly pruned and the channel-pruned folders without custom code, with prunec's
/// logits, and a Phi-3 GGUF file's model written as an HF folder. Needs Python with torch
/// and transformers: `PRUNEC_PYTHON=~/.cache/prunec/venv-ref/bin/python cargo test --test hf_writer -- --ignored`.
#[test]
#[ignore = "needs Python with torch and transformers (PRUNEC_PYTHON)"]
fn transformers_loads_written_llama_like_folders() {
    use prunec_passes::prune::{apply, select, Allocate, Amount, Gqa, Mode, PruneOptions};
    use prunec_passes::score::{score, Aggregation, Importance};
    let dir = tempfile::tempdir().unwrap();
    for name in ["qwen2", "qwen3", "mistral", "phi3"] {
        for (mode, uniform) in [(Mode::Block, true), (Mode::Channel, false)] {
            let mut model = load(&fixture(name));
            prunec_passes::run_group(&mut model).unwrap();
            let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0).unwrap();
            let opts = PruneOptions { amount: Amount::UnitRatio(0.5), mode, attn_layers: None, mlp_layers: None, allocate: Allocate::Uniform, gqa: Gqa::KvHeads, round_to: 1, uniform };
            let selection = select(&model, &scores, &opts).unwrap();
            apply(&mut model, &selection).unwrap();
            let label = format!("{name}-{mode:?}");
            let out = write_arch(&mut model, &dir.path().join(&label));
            check_folder_with_transformers(&out, dir.path(), &label);
        }
    }
    // a Phi-3 GGUF file's model, with the configuration its metadata gives
    let mut model = load(&fixture("gguf/phi3.gguf"));
    let out = write_arch(&mut model, &dir.path().join("phi3-from-gguf"));
    check_folder_with_transformers(&out, dir.path(), "phi3-from-gguf");
}
