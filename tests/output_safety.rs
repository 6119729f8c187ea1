//! Nothing a user has is lost: every way an output could destroy files (issue 14's list) run
//! against a scratch folder, with every file hashed before and after — nothing outside the new
//! output may change, and no temporary file may stay behind.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{assert_clean_failure, copy_fixture, fixture, golden_ids_jsonl_of, prunec, texts};

/// FNV-1a of a file's bytes (what changed, not how).
fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Every file and folder under `root` (relative paths), files with their hash, folders with 0.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<u64>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<u64>>) {
        for e in std::fs::read_dir(dir).expect("a readable folder") {
            let path = e.expect("an entry").path();
            let rel = path.strip_prefix(root).expect("under the root").to_path_buf();
            if path.is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else {
                out.insert(rel, Some(hash(&std::fs::read(&path).expect("a readable file"))));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Asserts that between `before` and `after` (snapshots of one root) nothing changed but what
/// lies under `new` (relative paths of the new outputs), and nothing else appeared.
fn assert_only_changed(before: &BTreeMap<PathBuf, Option<u64>>, after: &BTreeMap<PathBuf, Option<u64>>, new: &[&str]) {
    let inside = |p: &Path| new.iter().any(|n| p.starts_with(n));
    for (path, h) in before {
        if !inside(path) {
            assert_eq!(after.get(path), Some(h), "{} changed or disappeared", path.display());
        }
    }
    for path in after.keys() {
        assert!(before.contains_key(path) || inside(path), "{} appeared", path.display());
    }
}

/// A scratch folder holding a user's files and a copy of the `llama-gqa` model (`model/`).
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for e in std::fs::read_dir(fixture("llama-gqa")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), model.join(e.file_name())).unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), "a user's notes").unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/calib.txt"), "The quick brown fox jumps over the lazy dog. ".repeat(40)).unwrap();
    dir
}

/// Runs prunec in folder `cwd`.
fn prunec_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prunec")).args(args).current_dir(cwd).output().expect("the prunec binary runs")
}

/// A quick pruning run of `model` (magnitude importance: no calibration), with `extra` flags.
fn prune_args<'a>(model: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![model, "--pass", "group,score,prune", "--ratio", "0.2", "--importance", "l2"];
    args.extend_from_slice(extra);
    args
}

/// Issue 14, data loss 1: `-o . --force` deletes nothing — neither when the folder holds the
/// model nor when it does not.
#[test]
fn output_into_the_current_folder_deletes_nothing() {
    let dir = scratch();
    let before = snapshot(dir.path());
    // the model inside the current folder
    let out = prunec_in(dir.path(), &prune_args("model", &["-o", ".", "--force"]));
    assert_clean_failure(&out, &["refusing to overwrite an input", "holds the input"]);
    // the model elsewhere: the current folder is still never replaced
    let elsewhere = fixture("llama-gqa");
    let out = prunec_in(dir.path(), &prune_args(elsewhere.to_str().unwrap(), &["-o", ".", "--force"]));
    assert_clean_failure(&out, &["current folder"]);
    let out = prunec_in(&dir.path().join("data"), &prune_args(elsewhere.to_str().unwrap(), &["-o", "..", "--force"]));
    assert_clean_failure(&out, &["current folder"]);
    assert_only_changed(&before, &snapshot(dir.path()), &[]);
}

/// Issue 14, data loss 2: `--force` replaces only an earlier prunec output; any other
/// non-empty folder is refused and kept.
#[test]
fn force_replaces_only_earlier_prunec_outputs() {
    let dir = scratch();
    let m = dir.path().join("model");
    let m = m.to_str().unwrap();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("thesis.tex"), "years of work").unwrap();
    let before = snapshot(dir.path());
    let out = prunec(&prune_args(m, &["-o", theirs.to_str().unwrap(), "--force"]));
    assert_clean_failure(&out, &["not an earlier prunec output"]);
    assert_only_changed(&before, &snapshot(dir.path()), &[]);

    // an earlier output is replaced, and nothing else changes
    let ours = dir.path().join("ours");
    let first = prunec(&prune_args(m, &["-o", ours.to_str().unwrap()]));
    assert!(first.status.success(), "{}", texts(&first).1);
    let before = snapshot(dir.path());
    let second = prunec(&[m, "--pass", "group,score,prune", "--ratio", "0.3", "--importance", "l2", "-o", ours.to_str().unwrap(), "--force"]);
    assert!(second.status.success(), "{}", texts(&second).1);
    let after = snapshot(dir.path());
    assert_only_changed(&before, &after, &["ours"]);
    assert_ne!(before[Path::new("ours/model.safetensors")], after[Path::new("ours/model.safetensors")], "replaced");
}

/// Issue 14, data loss 3: while `--force` replaces an output, the old folder or the new one is
/// always complete somewhere (the destination, or the old one set aside) — watched through a
/// whole replacement, and after kills (SIGKILL: no cleanup runs) at points spread over one; the
/// next run cleans up after a killed one and puts a set-aside folder back.
#[test]
fn replacing_an_output_never_loses_both_old_and_new() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap().to_string();
    let synth = |extra: &[&str]| {
        let mut args: Vec<String> = ["synth", "--preset", "135m", "--layers", "1", "-o", &o].iter().map(|s| s.to_string()).collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let start = Instant::now();
    let first = Command::new(env!("CARGO_BIN_EXE_prunec")).args(synth(&[])).output().unwrap();
    assert!(first.status.success(), "{}", texts(&first).1);
    let whole_run = start.elapsed();
    let complete = |p: &Path| p.join("config.json").is_file() && p.join("model.safetensors").is_file();
    // a complete output exists at every moment: the destination, or the old one set aside (the
    // destination is looked at again after the set-aside ones: a replacement may have renamed the
    // new one in and deleted the old one between the first two looks)
    let some_complete = || {
        complete(&out)
            || std::fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".out.prunec-old-") && complete(&e.path()))
            || complete(&out)
    };
    // `None`: watched until it ends; else killed after that share of a whole run
    for (k, kill_at) in [None, Some(0.5), Some(0.95), Some(1.05)].into_iter().enumerate() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_prunec"))
            .args(synth(&["--force", "--seed", &(k + 1).to_string()]))
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let mut observations = 0u64;
        loop {
            assert!(some_complete(), "no complete output {} ms into a replacement", start.elapsed().as_millis());
            observations += 1;
            if child.try_wait().unwrap().is_some() || kill_at.is_some_and(|f| start.elapsed() >= whole_run.mul_f64(f)) {
                break;
            }
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        assert!(some_complete(), "killed at {kill_at:?} of a run ({observations} observations): no complete output left");
        if kill_at.is_none() {
            assert!(status.success() && observations > 100, "{observations} observations of a whole replacement");
        }
        // the next run cleans up after the killed one (and puts a set-aside folder back)
        let next = prunec(&synth(&["--force"]).iter().map(String::as_str).collect::<Vec<_>>());
        assert!(next.status.success(), "{}", texts(&next).1);
        let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["out"], "killed at {kill_at:?}: leftovers");
        assert!(complete(&out));
    }
}

/// Issue 14, data loss 4: side outputs never overwrite inputs, nor replace existing files or
/// folders without `--force`.
#[test]
fn side_outputs_never_overwrite_inputs_or_existing_files() {
    let dir = scratch();
    let d = |p: &str| dir.path().join(p).to_str().unwrap().to_string();
    let m = d("model");
    std::fs::write(dir.path().join("X.md"), "an older report's twin").unwrap();
    std::fs::create_dir(dir.path().join("results")).unwrap();
    std::fs::write(dir.path().join("results/keep.csv"), "1,2").unwrap();
    let before = snapshot(dir.path());
    let calib = d("data/calib.txt");
    let ids = golden_ids_jsonl_of("llama-gqa", &dir.path().join("data"));
    let before_ids = snapshot(dir.path());
    assert_eq!(before_ids.len(), before.len() + 1);
    let eval = ["--pass", "eval", "--eval-text", ids.to_str().unwrap(), "--seq-len", "12"];
    let cases: Vec<(Vec<String>, &[&str])> = vec![
        (vec!["--report".into(), d("model/config.json")], &["refusing to overwrite an input"]),
        (vec!["--report".into(), d("model/config.json"), "--force".into()], &["refusing to overwrite an input"]),
        (vec!["--table".into(), d("model/config")], &["refusing to overwrite an input", "inside the input folder"]),
        (vec!["--report".into(), calib.clone(), "--calib".into(), calib.clone()], &["refusing to overwrite an input", "calib.txt"]),
        (vec!["--report".into(), ids.to_str().unwrap().into(), "--force".into()], &["refusing to overwrite an input"]),
        (vec!["--report".into(), d("X.json")], &["X.md", "already exists; give --force"]),
        (vec!["--samples".into(), d("model/config.json"), "--force".into()], &["--samples", "refusing to overwrite an input"]),
        (vec!["--samples".into(), d("X.md")], &["--samples", "X.md", "already exists; give --force"]),
        (vec!["--report".into(), d("results")], &["results", "never replaces a folder"]),
        (vec!["--report".into(), d("results"), "--force".into()], &["results", "never replaces a folder"]),
        (vec!["--report".into(), d("R.json"), "--table".into(), d("R")], &["would write the same place"]),
    ];
    for (extra, needles) in &cases {
        let mut args: Vec<&str> = vec![m.as_str()];
        args.extend(eval);
        args.extend(extra.iter().map(String::as_str));
        assert_clean_failure(&prunec(&args), needles);
        assert_only_changed(&before_ids, &snapshot(dir.path()), &[]);
    }
    // --scores-out: over the weights, over a folder
    for (target, needle) in [(d("model/model.safetensors"), "refusing to overwrite an input"), (d("results"), "never replaces a folder")] {
        for force in [false, true] {
            let mut args = prune_args(&m, &["--scores-out", &target]);
            if force {
                args.push("--force");
            }
            assert_clean_failure(&prunec(&args), &[needle]);
        }
    }
    assert_only_changed(&before_ids, &snapshot(dir.path()), &[]);
    // with --force an earlier report and its twin are replaced, nothing else
    let mut args: Vec<&str> = vec![m.as_str()];
    args.extend(eval);
    let x = d("X.json");
    args.extend(["--report", &x, "--force"]);
    let run = prunec(&args);
    assert!(run.status.success(), "{}", texts(&run).1);
    assert_only_changed(&before_ids, &snapshot(dir.path()), &["X.json", "X.md", "X.table.md", "X.table.csv", "X.table.json"]);
}

/// Issue 14, data loss 5: an ONNX output never replaces the input's external data file.
#[test]
fn onnx_outputs_never_replace_external_data() {
    let dir = tempfile::tempdir().unwrap();
    let source = prunec_frontends::onnx::OnnxFile::open(&fixture("llama-gqa/model.ts.onnx")).unwrap();
    let a = dir.path().join("a.onnx");
    prunec_frontends::onnx::write_model(&source.model, &a, Some("b.onnx.data")).unwrap();
    let before = snapshot(dir.path());
    let a = a.to_str().unwrap();
    let b = dir.path().join("b.onnx");
    let data = dir.path().join("b.onnx.data");
    for (out, force) in [(&b, false), (&b, true), (&data, true), (&data, false)] {
        let mut args = prune_args(a, &["-o", out.to_str().unwrap()]);
        if force {
            args.push("--force");
        }
        assert_clean_failure(&prunec(&args), &["refusing to overwrite an input", "b.onnx.data"]);
        assert_only_changed(&before, &snapshot(dir.path()), &[]);
    }
    // elsewhere, the pruned file gets its own external data
    let run = prunec(&prune_args(a, &["-o", dir.path().join("c.onnx").to_str().unwrap()]));
    assert!(run.status.success(), "{}", texts(&run).1);
    assert_only_changed(&before, &snapshot(dir.path()), &["c.onnx", "c.onnx.data"]);
}

/// Issue 14, data loss 6: `--checkpoint-dir D` never replaces `D/checkpoint-N` without
/// `--force` (checked before any training), nor a folder prunec did not write even with it.
#[test]
fn checkpoints_are_not_replaced_without_force() {
    let dir = scratch();
    let ckpt = dir.path().join("ckpt");
    std::fs::create_dir_all(ckpt.join("checkpoint-1")).unwrap();
    std::fs::write(ckpt.join("checkpoint-1/adapter_model.safetensors"), "someone else's").unwrap();
    let ids = golden_ids_jsonl_of("llama-gqa", &dir.path().join("data"));
    let before = snapshot(dir.path());
    let m = dir.path().join("model");
    let args = |force: bool| {
        let mut a: Vec<String> = [m.to_str().unwrap(), "--pass", "lora,recover", "--train-text", ids.to_str().unwrap(), "--cutoff-len", "12"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(["--steps", "1", "--checkpoint-dir", ckpt.to_str().unwrap()].map(String::from));
        if force {
            a.push("--force".into());
        }
        a
    };
    let run = |force| prunec(&args(force).iter().map(String::as_str).collect::<Vec<_>>());
    assert_clean_failure(&run(false), &["--checkpoint-dir", "checkpoint-1", "--force"]);
    assert_clean_failure(&run(true), &["checkpoint-1", "not an earlier prunec output"]);
    assert_only_changed(&before, &snapshot(dir.path()), &[]);
}

/// The hidden temporary folder of the run being written, once it exists.
fn wait_for_temp(dir: &Path, child: &mut std::process::Child) -> Option<PathBuf> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Some(e) = std::fs::read_dir(dir).unwrap().flatten().find(|e| e.file_name().to_string_lossy().contains(".prunec-tmp-")) {
            return Some(e.path());
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
    }
    None
}

/// Issue 14, data loss 7: SIGINT and SIGTERM during `-o` remove the hidden temporary folder
/// (and write nothing); one left by a process that died is removed by the next run.
#[test]
fn signals_remove_unfinished_outputs_and_stale_ones_go_next_time() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    let out = dir.path().join("out");
    for (signal, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let before = snapshot(dir.path());
        let mut child = Command::new(env!("CARGO_BIN_EXE_prunec"))
            .args(["synth", "--preset", "135m", "--layers", "4", "-o", out.to_str().unwrap()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let temp = wait_for_temp(dir.path(), &mut child).unwrap_or_else(|| panic!("{name}: no temporary folder appeared"));
        let pid = i32::try_from(child.id()).unwrap();
        // SAFETY: sending a signal to the child this test started.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let status = child.wait_with_output().unwrap();
        assert_eq!(status.status.code(), Some(128 + signal), "{name}: {}", String::from_utf8_lossy(&status.stderr));
        assert!(String::from_utf8_lossy(&status.stderr).contains("unfinished outputs removed"));
        assert!(!temp.exists(), "{name}: {} left behind", temp.display());
        assert_only_changed(&before, &snapshot(dir.path()), &[]);
    }
    // leftovers of a process that is gone (a process id above the kernel's limit)
    let dead = 4_194_304 + 99;
    let stale = dir.path().join(format!(".out.prunec-tmp-{dead}"));
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("model.safetensors"), "half a file").unwrap();
    std::fs::write(dir.path().join(format!(".other.json.prunec-tmp-{dead}")), "half").unwrap();
    let run = prunec(&["synth", "--preset", "tiny", "-o", out.to_str().unwrap()]);
    assert!(run.status.success(), "{}", texts(&run).1);
    let mut names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["keep.txt", "out"]);
}

/// Every file written is new or replaced with `--force`: a copied model folder's own files are
/// never touched by a run that reads it (a regression test for the copied tokenizer files).
#[test]
fn a_run_reading_a_folder_leaves_it_as_it_was() {
    let model = copy_fixture("llama-mha");
    let dir = tempfile::tempdir().unwrap();
    let before = snapshot(model.path());
    let out = dir.path().join("pruned");
    let run = prunec(&prune_args(model.path().to_str().unwrap(), &["-o", out.to_str().unwrap(), "--report", dir.path().join("r.json").to_str().unwrap()]));
    assert!(run.status.success(), "{}", texts(&run).1);
    assert_only_changed(&before, &snapshot(model.path()), &[]);
}
