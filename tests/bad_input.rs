//! Bad input: each a clear error naming the file (and the tensor), exit code 1, no panic.

mod common;

use std::fs;

use common::{assert_clean_failure, copy_fixture, fixture, prunec};

fn run_group(path: &std::path::Path) -> std::process::Output {
    prunec(&[path.to_str().unwrap(), "--pass", "group"])
}

#[test]
fn missing_model() {
    let out = run_group(std::path::Path::new("/nonexistent/model.gguf"));
    assert_clean_failure(&out, &["/nonexistent/model.gguf"]);
    // an error that prints its cause is not followed by that cause again
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
}

#[test]
fn missing_config_json() {
    let dir = copy_fixture("llama-mha");
    fs::remove_file(dir.path().join("config.json")).unwrap();
    let out = run_group(dir.path());
    assert_clean_failure(&out, &["config.json", "missing"]);
}

#[test]
fn config_json_not_json() {
    let dir = copy_fixture("llama-mha");
    fs::write(dir.path().join("config.json"), "{ \"model_type\": \"llama\", ").unwrap();
    let out = run_group(dir.path());
    assert_clean_failure(&out, &["config.json", "corrupt"]);
}

#[test]
fn missing_weights() {
    let dir = copy_fixture("llama-mha");
    fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let out = run_group(dir.path());
    assert_clean_failure(&out, &["model.safetensors", "missing"]);
}

#[test]
fn truncated_safetensors() {
    let dir = copy_fixture("llama-mha");
    let path = dir.path().join("model.safetensors");
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let out = run_group(dir.path());
    assert_clean_failure(&out, &["model.safetensors", "corrupt safetensors"]);
}

#[test]
fn every_truncation_of_a_safetensors_header_is_an_error() {
    let dir = copy_fixture("llama-gqa");
    let path = dir.path().join("model.safetensors");
    let bytes = fs::read(&path).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize + 8;
    for cut in (0..header + 64).step_by(97) {
        fs::write(&path, &bytes[..cut]).unwrap();
        let err = prunec_frontends::load(dir.path()).expect_err("a truncated file is refused");
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }
}

#[test]
fn garbage_safetensors_header() {
    let dir = copy_fixture("llama-mha");
    let path = dir.path().join("model.safetensors");
    let mut bytes = fs::read(&path).unwrap();
    for b in &mut bytes[8..40] {
        *b = b'#';
    }
    fs::write(&path, &bytes).unwrap();
    let out = run_group(dir.path());
    assert_clean_failure(&out, &["model.safetensors", "corrupt safetensors"]);
}

#[test]
fn tensor_shape_disagrees_with_config() {
    let dir = copy_fixture("llama-mha");
    let cfg = fs::read_to_string(dir.path().join("config.json")).unwrap();
    fs::write(dir.path().join("config.json"), cfg.replace("\"intermediate_size\": 176", "\"intermediate_size\": 128")).unwrap();
    let out = run_group(dir.path());
    assert_clean_failure(
        &out,
        &["model.safetensors", "`model.layers.0.mlp.gate_proj.weight`", "[176, 64]", "[128, 64]"],
    );
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_fixture("llama-mha");
    let cfg = fs::read_to_string(dir.path().join("config.json")).unwrap();
    // five layers declared, four stored
    fs::write(dir.path().join("config.json"), cfg.replace("\"num_hidden_layers\": 4", "\"num_hidden_layers\": 5")).unwrap();
    let out = run_group(dir.path());
    assert_clean_failure(&out, &["`model.layers.4.input_layernorm.weight` not found"]);
}

#[test]
fn unsupported_architecture() {
    let dir = copy_fixture("llama-mha");
    let cfg = fs::read_to_string(dir.path().join("config.json")).unwrap();
    fs::write(dir.path().join("config.json"), cfg.replace("\"model_type\": \"llama\"", "\"model_type\": \"gpt2\"")).unwrap();
    let out = run_group(dir.path());
    assert_clean_failure(&out, &["config.json", "unsupported architecture `gpt2`", "supported: llama"]);
}

#[test]
fn heads_that_do_not_divide() {
    let dir = copy_fixture("llama-gqa");
    let cfg = fs::read_to_string(dir.path().join("config.json")).unwrap();
    fs::write(dir.path().join("config.json"), cfg.replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3")).unwrap();
    let out = run_group(dir.path());
    assert_clean_failure(&out, &["config.json", "not a multiple of num_key_value_heads 3"]);
}

#[test]
fn sharded_index_naming_a_missing_shard() {
    let dir = copy_fixture("llama-mha");
    fs::rename(dir.path().join("model.safetensors"), dir.path().join("model-00001-of-00002.safetensors")).unwrap();
    let index = r#"{"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                                   "lm_head.weight": "model-00002-of-00002.safetensors"}}"#;
    fs::write(dir.path().join("model.safetensors.index.json"), index).unwrap();
    let out = run_group(dir.path());
    assert_clean_failure(&out, &["model-00002-of-00002.safetensors", "lm_head.weight"]);
}

#[test]
fn not_a_model_file() {
    let out = run_group(&fixture("llama-mha").join("config.json"));
    assert_clean_failure(&out, &["config.json", "not an HF folder, a GGUF file nor an `.onnx` file"]);
}
