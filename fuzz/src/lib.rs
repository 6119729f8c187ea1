//! What prunec's fuzz targets share: a scratch folder in memory (`/dev/shm` where there is one)
//! for the readers that take paths, and the byte tokenizer of the test fixtures.
//!
//! Every target feeds bytes to a real entry point of the frontends (the same function the CLI
//! calls) and asserts nothing but that it returns: a panic, an abort, a hang or a runaway
//! allocation is what libFuzzer reports.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A folder of this process for the files a target writes (one per process: libFuzzer's
/// `-jobs` run several).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let dir = base.join(format!("prunec-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        dir
    })
}

/// Writes `bytes` as `name` in the scratch folder (`sub` a sub-folder, created) and returns its path.
pub fn write(sub: &str, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = scratch().join(sub);
    std::fs::create_dir_all(&dir).expect("a scratch sub-folder");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("a scratch file");
    path
}

/// Splits `data` in two at the position its first two bytes give (little endian), so that one
/// input holds two files.
pub fn split2(data: &[u8]) -> (&[u8], &[u8]) {
    if data.len() < 2 {
        return (data, &[]);
    }
    let n = usize::from(u16::from_le_bytes([data[0], data[1]])).min(data.len() - 2);
    data[2..].split_at(n)
}

/// The byte-level BPE `tokenizer.json` of the fixtures (one token per byte, GPT-2's table).
pub fn byte_tokenizer_json() -> String {
    let mut extra = 0u32;
    let vocab: serde_json::Map<String, serde_json::Value> = (0u32..256)
        .map(|b| {
            let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
            let c = if printable {
                char::from_u32(b).unwrap_or('?')
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap_or('?')
            };
            (c.to_string(), serde_json::Value::from(b))
        })
        .collect();
    let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": byte_level, "post_processor": null, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    })
    .to_string()
}

/// The byte tokenizer, read once.
pub fn byte_tokenizer() -> &'static prunec_frontends::tokenizer::Tokenizer {
    static TOK: OnceLock<prunec_frontends::tokenizer::Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let path = write("byte-tokenizer", "tokenizer.json", byte_tokenizer_json().as_bytes());
        prunec_frontends::tokenizer::Tokenizer::from_file(&path).expect("the byte tokenizer reads")
    })
}
