//! A `tokenizer.json`, read by `Tokenizer::from_file` as `--tokenizer FILE` does, then used:
//! a text encoded and decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = prunec_fuzz::write("tokenizer", "tokenizer.json", data);
    if let Ok(tok) = prunec_frontends::tokenizer::Tokenizer::from_file(&path) {
        if let Ok(ids) = tok.encode("Hello, world: ünïcödé 123\n\tThe end.") {
            let _ = tok.decode(&ids);
        }
        let _ = tok.chat_template();
    }
});
