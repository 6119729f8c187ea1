//! A GGUF file, read by `prunec_frontends::load` as `prunec MODEL.gguf` does (header, metadata,
//! tensor infos, the LLaMA configuration its metadata gives, the graph), written back as GGUF
//! (`-o FILE.gguf`), then its embedded tokenizer; a tensor of a model that reads is dequantized.
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
        // and written back as GGUF, as `-o FILE.gguf` does (types kept, blocks copied)
        if let Some(arch) = prunec_frontends::arch::of(&model) {
            use prunec_frontends::arch::gguf_out;
            let mut m = model.clone();
            if arch.before_writing(&mut m).is_ok() {
                let options = gguf_out::GgufOptions { replace: true, ..gguf_out::GgufOptions::default() };
                if let Ok(plan) = arch.gguf_plan(&m, gguf_out::block_width(&m, &options)) {
                    let out = path.with_file_name("out.gguf");
                    let _ = gguf_out::write(&m, &plan, &out, &[&path], options, &mut |_, _, _| {});
                }
            }
        }
    }
    if let Ok(tok) = prunec_frontends::tokenizer::Tokenizer::for_model(&path) {
        if let Ok(ids) = tok.encode("Hello, world: ünïcödé 123\n") {
            let _ = tok.decode(&ids);
        }
    }
});
