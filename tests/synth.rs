//! `prunec synth`: random-weight HF folders of real model shapes, read back by the frontend.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_clean_failure, fixture, prunec, texts};

/// Runs `prunec synth ARGS -o DIR/NAME` and returns the output folder; the run must succeed.
fn synth(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut all = vec!["synth"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", out.to_str().unwrap()]);
    let run = prunec(&all);
    let (stdout, stderr) = texts(&run);
    assert!(run.status.success(), "synth {args:?} failed:\n{stderr}");
    assert!(stdout.contains("wrote "), "{stdout}");
    out
}

/// The files of a folder, sorted by name.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// The group summary `prunec DIR --pass group` prints (lines after the count).
fn group_summary(model: &Path) -> String {
    let out = prunec(&[model.to_str().unwrap(), "--pass", "group"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    stdout
}

#[test]
fn tiny_preset_groups_like_the_fixture_it_copies() {
    let dir = tempfile::tempdir().unwrap();
    let out = synth(dir.path(), "tiny", &["--arch", "llama", "--preset", "tiny"]);
    assert_eq!(files(&out), ["config.json", "generation_config.json", "model.safetensors"]);
    assert_eq!(files(dir.path()), ["tiny"], "no temporary folder left beside the output");

    let summary = group_summary(&out);
    assert_eq!(summary, group_summary(&fixture("llama-gqa")));
    assert!(summary.contains("9 dependency groups"), "{summary}");
    let line = |kind: &str| summary.lines().find(|l| l.trim_start().starts_with(kind)).unwrap_or_default().to_string();
    let words = |l: String| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(words(line("attention")), ["attention", "4", "2", "(each", "4", "sub-units)", "5120"]);
    assert_eq!(words(line("mlp")), ["mlp", "4", "176", "192"]);
    assert_eq!(words(line("hidden")), ["hidden", "1", "64", "3017"]);

    // the same shapes, configuration and tensor names as the fixture
    let synth_model = prunec_frontends::load(&out).unwrap();
    let fixture_model = prunec_frontends::load(&fixture("llama-gqa")).unwrap();
    let shapes = |m: &prunec_ir::Model| m.params.iter().map(|(n, p)| (n.clone(), p.shape.clone())).collect::<Vec<_>>();
    assert_eq!(shapes(&synth_model), shapes(&fixture_model));
    let config = |dir: &Path| {
        let json = prunec_frontends::hf::read_config(dir).unwrap();
        prunec_frontends::arch::llama::LlamaConfig::from_hf_json(dir, &json).unwrap()
    };
    assert_eq!(config(&out), config(&fixture("llama-gqa")));

    // weights like HF's initialisation: normal(0, 0.02), norms 1.0
    let q = synth_model.params.read_f32("model.layers.0.self_attn.q_proj.weight").unwrap();
    let std = (q.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / q.len() as f64).sqrt();
    assert!((std - 0.02).abs() < 0.002, "std {std}");
    let norm = synth_model.params.read_f32("model.layers.3.post_attention_layernorm.weight").unwrap();
    assert!(norm.iter().all(|&v| v == 1.0));
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let a = synth(dir.path(), "a", &["--preset", "tiny", "--seed", "42"]);
    let b = synth(dir.path(), "b", &["--preset", "tiny", "--seed", "42"]);
    let c = synth(dir.path(), "c", &["--preset", "tiny", "--seed", "43"]);
    for name in files(&a) {
        assert_eq!(std::fs::read(a.join(&name)).unwrap(), std::fs::read(b.join(&name)).unwrap(), "{name}");
    }
    let weights = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_ne!(weights(&a), weights(&c));
    // different in every drawn tensor, equal in the norms
    let (wa, wc) = (weights(&a), weights(&c));
    let (sa, sc) = (safetensors::SafeTensors::deserialize(&wa).unwrap(), safetensors::SafeTensors::deserialize(&wc).unwrap());
    for (name, ta) in sa.tensors() {
        let tc = sc.tensor(&name).unwrap();
        assert_eq!(name.ends_with("norm.weight"), ta.data() == tc.data(), "{name}");
    }
}

#[test]
fn smollm2_shape_in_bf16_with_fewer_layers() {
    let dir = tempfile::tempdir().unwrap();
    let out = synth(dir.path(), "smol", &["--preset", "135m", "--layers", "2", "--dtype", "bf16"]);
    let model = prunec_frontends::load(&out).unwrap();
    let config = prunec_frontends::hf::read_config(&out).unwrap();
    assert_eq!(config["num_hidden_layers"], 2);
    assert_eq!(config["dtype"], "bfloat16");
    assert_eq!(config["rope_parameters"]["rope_theta"], 100000.0);
    let shape = |n: &str| model.params.get(n).unwrap_or_else(|| panic!("{n}")).shape.clone();
    assert_eq!(shape("model.embed_tokens.weight"), [49152, 576]);
    assert_eq!(shape("model.layers.1.self_attn.q_proj.weight"), [576, 576]);
    assert_eq!(shape("model.layers.1.self_attn.k_proj.weight"), [192, 576]);
    assert_eq!(shape("model.layers.1.self_attn.v_proj.weight"), [192, 576]);
    assert_eq!(shape("model.layers.1.self_attn.o_proj.weight"), [576, 576]);
    assert_eq!(shape("model.layers.1.mlp.gate_proj.weight"), [1536, 576]);
    assert_eq!(shape("model.layers.1.mlp.down_proj.weight"), [576, 1536]);
    assert_eq!(shape("model.norm.weight"), [576]);
    assert!(model.params.get("model.layers.2.input_layernorm.weight").is_none());
    assert!(model.params.get("lm_head.weight").is_none(), "SmolLM2 ties its embeddings");
    let layer = (2 * 576 * 576 + 2 * 192 * 576) + 3 * 576 * 1536 + 2 * 576;
    assert_eq!(model.params.numel(), 49152 * 576 + 2 * layer + 576);
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.tensors().iter().all(|(_, t)| t.dtype() == safetensors::Dtype::BF16));

    let summary = group_summary(&out);
    let line = summary.lines().find(|l| l.trim_start().starts_with("attention")).unwrap_or_default();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[..6], ["attention", "2", "3", "(each", "3", "sub-units)"], "{summary}");
}

#[test]
fn f16_is_the_f32_run_rounded() {
    let dir = tempfile::tempdir().unwrap();
    let full = synth(dir.path(), "f32", &["--preset", "tiny", "--seed", "5"]);
    let half = synth(dir.path(), "f16", &["--preset", "tiny", "--seed", "5", "--dtype", "f16"]);
    let (full, half) = (prunec_frontends::load(&full).unwrap(), prunec_frontends::load(&half).unwrap());
    assert_eq!(half.params.len(), full.params.len());
    for (name, _) in full.params.iter() {
        let (want, got) = (full.params.read_f32(name).unwrap(), half.params.read_f32(name).unwrap());
        assert_eq!(want.len(), got.len());
        for (w, g) in want.iter().zip(got.iter()) {
            // f16 keeps 11 significant bits: rounding moves a value by at most half an ulp,
            // 2^-11 relative (values here are far above f16's subnormals, bar a few)
            assert!((w - g).abs() <= w.abs() * 2f32.powi(-11) + 6e-8, "{name}: {w} vs {g}");
            assert_eq!(*g, ::half::f16::from_f32(*w).to_f32(), "{name}");
        }
    }
}

#[test]
fn big_models_are_sharded_with_an_index() {
    // SmolLM2's shape with 2 layers, f32: a 108 MiB embedding and 2 × 13.5 MiB of layers;
    // with 64 MiB shards the embedding fills the first shard alone (HF does the same with a
    // tensor over the limit) and the rest goes to the second.
    let dir = tempfile::tempdir().unwrap();
    let out = synth(dir.path(), "smol", &["--preset", "135m", "--layers", "2", "--max-shard-mib", "64"]);
    assert_eq!(
        files(&out),
        [
            "config.json",
            "generation_config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json"
        ]
    );
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("model.safetensors.index.json")).unwrap()).unwrap();
    let map = index["weight_map"].as_object().unwrap();
    assert_eq!(map.len(), 1 + 2 * 9 + 1);
    assert_eq!(map["model.embed_tokens.weight"], "model-00001-of-00002.safetensors");
    assert!(map.iter().filter(|(k, _)| *k != "model.embed_tokens.weight").all(|(_, v)| v == "model-00002-of-00002.safetensors"));
    let sizes: u64 = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        .iter()
        .map(|f| {
            let bytes = std::fs::read(out.join(f)).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            st.tensors().iter().map(|(_, t)| t.data().len() as u64).sum::<u64>()
        })
        .sum();
    assert_eq!(index["metadata"]["total_size"], sizes);

    // the same weights as one file
    let single = synth(dir.path(), "one", &["--preset", "135m", "--layers", "2"]);
    let (a, b) = (prunec_frontends::load(&out).unwrap(), prunec_frontends::load(&single).unwrap());
    for (name, _) in b.params.iter() {
        assert_eq!(a.params.read_f32(name).unwrap(), b.params.read_f32(name).unwrap(), "{name}");
    }
}

#[test]
fn bad_arguments_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let o = out.to_str().unwrap();
    assert_clean_failure(&prunec(&["synth", "--preset", "405b", "-o", o]), &["unknown preset `405b`", "7b, 8b, 13b, 70b, 1b, 135m, tiny"]);
    assert_clean_failure(
        &prunec(&["synth", "--arch", "gpt2", "--preset", "tiny", "-o", o]),
        &["unknown architecture `gpt2`", "llama"],
    );
    assert_clean_failure(&prunec(&["synth", "--preset", "tiny", "--layers", "0", "-o", o]), &["--layers 0"]);
    assert_clean_failure(&prunec(&["synth", "--preset", "tiny", "--dtype", "f8", "-o", o]), &["unknown dtype `f8`", "bf16"]);
    assert_clean_failure(&prunec(&["synth", "--preset", "tiny", "--max-shard-mib", "0", "-o", o]), &["--max-shard-mib 0"]);
    assert!(!out.exists());
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
    // without a subcommand, a model is needed
    assert_clean_failure(&prunec(&["--pass", "group"]), &["no MODEL given"]);
}

#[test]
fn existing_output_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("taken");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let o = out.to_str().unwrap();
    assert_clean_failure(&prunec(&["synth", "--preset", "tiny", "-o", o]), &["not empty", "--force"]);
    assert_eq!(files(&out), ["keep.txt"]);
    // a file is refused even with --force
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert_clean_failure(&prunec(&["synth", "--preset", "tiny", "--force", "-o", file.to_str().unwrap()]), &["not a folder"]);
    // --force replaces only an earlier prunec output (issue 14): the user's folder stays
    assert_clean_failure(&prunec(&["synth", "--preset", "tiny", "--force", "-o", o]), &["not an earlier prunec output"]);
    assert_eq!(files(&out), ["keep.txt"]);
    // an empty folder is fine, and --force replaces a full one that prunec wrote
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    synth(dir.path(), "empty", &["--preset", "tiny"]);
    synth(dir.path(), "empty", &["--preset", "tiny", "--force", "--seed", "1"]);
    assert_eq!(files(&empty), ["config.json", "generation_config.json", "model.safetensors"]);
    assert_eq!(files(dir.path()), ["empty", "file", "taken"]);
}

#[test]
fn model_runs_keep_working_beside_the_subcommand() {
    let out = prunec(&[fixture("llama-gqa").to_str().unwrap(), "--pass", "group"]);
    assert!(out.status.success(), "{}", texts(&out).1);
    // a model given with the subcommand is refused
    let out = prunec(&[fixture("llama-gqa").to_str().unwrap(), "synth", "--preset", "tiny"]);
    assert!(!out.status.success());
}
