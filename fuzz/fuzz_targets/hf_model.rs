//! An HF folder: `config.json` (the input's first part, its length in the first two bytes) and
//! `model.safetensors` (the rest: the 8-byte header length, the header, and as much tensor data
//! as given; the file is extended with zeros up to the offsets the header names, so that its
//! tensors can be whole without the input carrying them). Read by `prunec_frontends::load`, as
//! `prunec MODEL` does, then written back as a configuration; four configuration readers (LLaMA's,
//! ChatGLM2's, ChatGLM-6B's, Phi-3's) also read the JSON on their own.
#![no_main]

use std::io::Write;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use prunec_frontends::arch::{self, chatglm2, chatglm6b, llama, phi3};

/// The largest file the data is extended to (a sparse file: costs nothing until read).
const MAX_FILE: u64 = 1 << 30;

/// The largest end offset the header names, read loosely (the reader checks it properly).
fn data_end(st: &[u8]) -> u64 {
    let Some(len) = st.get(..8) else { return 0 };
    let n = u64::from_le_bytes(len.try_into().unwrap_or([0; 8]));
    let Some(header) = usize::try_from(n).ok().and_then(|n| st.get(8..8usize.checked_add(n)?)) else { return 0 };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(header) else { return 0 };
    let end = map.values().filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64()).max().unwrap_or(0);
    8 + n + end
}

fuzz_target!(|data: &[u8]| {
    let (config, st) = prunec_fuzz::split2(data);
    let dir = prunec_fuzz::scratch().join("hf");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::remove_file(dir.join("model.safetensors.index.json"));
    prunec_fuzz::write("hf", "config.json", config);
    let Ok(mut file) = std::fs::File::create(dir.join("model.safetensors")) else { return };
    let _ = file.write_all(st);
    let _ = file.set_len((st.len() as u64).max(data_end(st).min(MAX_FILE)));
    drop(file);

    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(config) {
        let p = Path::new("config.json");
        let _ = llama::LlamaConfig::from_hf_json(p, &json);
        let _ = chatglm2::ChatGlmConfig::from_hf_json(p, &json);
        let _ = chatglm6b::GlmConfig::from_hf_json(p, &json);
        let _ = phi3::Phi3Config::from_hf_json(p, &json);
    }
    if let Ok(model) = prunec_frontends::load(&dir) {
        if let Some(a) = arch::of(&model) {
            let _ = a.hf_config(&model);
        }
        let _ = prunec_ir::print(&model);
    }
});
