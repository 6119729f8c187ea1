//! A GGUF file, read by `prunec_frontends::load` as `prunec MODEL.gguf` does (header, metadata,
//! tensor infos, the LLaMA configuration its metadata gives, the graph), then its embedded
//! tokenizer; a tensor of a model that reads is dequantized.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = prunec_fuzz::write("gguf", "model.gguf", data);
    if let Ok(file) = prunec_frontends::gguf::GgufFile::open(&path) {
        if let Some(info) = file.tensors().first() {
            let _ = file.dequantize_tensor(info);
        }
    }
    if let Ok(model) = prunec_frontends::load(&path) {
        let _ = prunec_frontends::arch::llama::hf_config(&model);
    }
    if let Ok(tok) = prunec_frontends::tokenizer::Tokenizer::for_model(&path) {
        if let Ok(ids) = tok.encode("Hello, world: ünïcödé 123\n") {
            let _ = tok.decode(&ids);
        }
    }
});
