//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fixture of the project's own `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Runs the `prunec` binary with `args`.
pub fn prunec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prunec")).args(args).output().expect("the prunec binary runs")
}

/// Stdout and stderr of a run, as text.
pub fn texts(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Copies a fixture folder into a fresh temporary folder, files writable.
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for entry in std::fs::read_dir(fixture(name)).expect("the fixture exists") {
        let entry = entry.expect("a folder entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
    }
    dir
}

/// Asserts that a run failed cleanly: non-zero exit, an `error:` line naming every one of
/// `needles`, and no panic.
pub fn assert_clean_failure(out: &Output, needles: &[&str]) {
    let (stdout, stderr) = texts(out);
    assert!(!out.status.success(), "expected failure, got success; stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "panicked:\n{stderr}");
    assert!(stderr.contains("error:"), "no error line:\n{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr does not name `{n}`:\n{stderr}");
    }
}

/// SmolLM2-135M-Instruct's GGUF file: `PRUNEC_SMOLLM2_GGUF`, else fetched (once, cached) by
/// `scripts/fetch-smollm2`. `None` only when `PRUNEC_OFFLINE` is set; a failed fetch fails.
pub fn smollm2() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PRUNEC_SMOLLM2_GGUF") {
        return Some(PathBuf::from(p));
    }
    if std::env::var_os("PRUNEC_OFFLINE").is_some() {
        println!("skipped: PRUNEC_OFFLINE is set");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-smollm2");
    let out = Command::new(&script).output().expect("scripts/fetch-smollm2 runs");
    assert!(out.status.success(), "fetching SmolLM2 failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The two golden rows of `llama-mha` as JSONL `input_ids` rows in `dir`.
pub fn golden_ids_jsonl(dir: &Path) -> PathBuf {
    let path = dir.join("ids.jsonl");
    std::fs::write(
        &path,
        "{\"input_ids\": [250,250,252,97,43,236,26,66,35,81,137,30]}\n\
         {\"input_ids\": [203,61,201,81,203,246,245,67,142,112,65,156]}\n",
    )
    .expect("write ids.jsonl");
    path
}
