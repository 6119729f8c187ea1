//! Data parallelism over burn-collective: calibration (resident and layer-streamed) and LoRA
//! training split over 2 or 3 local CPU peers give what one peer gives (scores 1e-6 relative,
//! the same units pruned; adapters after 20 steps 1e-5), every peer the same; the command line
//! with `--devices cpu:0,cpu:1`, and two processes joined through the global level over the
//! loopback address, write what one process writes; a rank killed mid-run makes the other exit
//! with an error within its `--peer-timeout`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fixture, golden, prunec, texts};
use prunec_backends::runtime::{self, cpu, Cpu, CpuAutodiff, Peer, Sample, StreamOptions, TrainOptions};
use prunec_ir::{CalibrationStats, Group, Model};
use prunec_passes::prune::{Allocate, Amount, Gqa, Mode, PruneOptions};
use prunec_passes::score::{score, score_with, scored_axes, Aggregation, Importance, Saliences, Scores};

const TIMEOUT: Duration = Duration::from_secs(300);

fn model(name: &str) -> Model {
    let mut m = prunec_frontends::load(&fixture(name)).unwrap();
    prunec_passes::run_group(&mut m).unwrap();
    m
}

/// Six samples: the fixture's golden rows and their reversals and rotations (of one length).
fn samples(name: &str) -> Vec<Vec<u32>> {
    let rows = golden(name).rows("input_ids");
    let mut out = rows.clone();
    out.extend(rows.iter().map(|r| r.iter().rev().copied().collect::<Vec<_>>()));
    out.extend(rows.iter().map(|r| {
        let mut r = r.clone();
        r.rotate_left(1);
        r
    }));
    out
}

fn peers(n: usize) -> Vec<prunec_backends::burn::backend::flex::FlexDevice> {
    vec![cpu(); n]
}

/// Largest difference of two maps of vectors, relative to each vector's largest magnitude.
fn worst_relative(a: &BTreeMap<String, Vec<f32>>, b: &BTreeMap<String, Vec<f32>>) -> f64 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut worst = 0.0f64;
    for (name, x) in a {
        let y = &b[name];
        assert_eq!(x.len(), y.len(), "{name}");
        let scale = x.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
        for (p, q) in x.iter().zip(y) {
            worst = worst.max(f64::from((p - q).abs() / scale));
        }
    }
    worst
}

fn calibrate(model: &Model, samples: &[Vec<u32>], fisher: bool, micro_batch: usize, n: usize) -> Vec<CalibrationStats> {
    let options = runtime::CalibrationOptions { fisher, micro_batch, wanted: None };
    runtime::run_peers::<Cpu, _>(&peers(n), None, TIMEOUT, |peer| {
        runtime::calibrate_on::<CpuAutodiff>(model, peer, samples, options.clone(), |_, _| {})
    })
    .unwrap()
    .results
}

/// Worst relative difference of every group's unit scores (to the group's largest), and the
/// same 20% lowest units.
fn compare_scores(model: &Model, a: &Scores, b: &Scores) -> f64 {
    let mut worst = 0.0f64;
    for (k, g) in model.groups.as_ref().unwrap().iter().enumerate() {
        let (r, s) = (&a.groups[k], &b.groups[k]);
        assert_eq!(r.units.len(), s.units.len());
        let scale = r.units.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
        for (x, y) in r.units.iter().chain(r.sub_units.iter().flatten()).zip(s.units.iter().chain(s.sub_units.iter().flatten())) {
            worst = worst.max((x - y).abs() / scale);
        }
        let lowest = |v: &[f64]| {
            let mut o: Vec<usize> = (0..v.len()).collect();
            o.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
            let mut o = o[..v.len() / 5].to_vec();
            o.sort_unstable();
            o
        };
        assert_eq!(lowest(&r.units), lowest(&s.units), "{} layer {:?}: other units chosen", g.kind, g.block);
    }
    worst
}

#[test]
fn peers_calibrate_as_one_peer() {
    for name in ["llama-gqa", "chatglm2-6b"] {
        let model = model(name);
        let samples = samples(name);
        for (fisher, micro_batch) in [(true, 1), (false, 2)] {
            let one = calibrate(&model, &samples, fisher, micro_batch, 1).remove(0);
            for n in [2, 3] {
                let all = calibrate(&model, &samples, fisher, micro_batch, n);
                for other in &all[1..] {
                    assert_eq!(other, &all[0], "{name}: every peer holds the same statistics");
                }
                let many = &all[0];
                assert_eq!((many.samples, many.tokens), (one.samples, one.tokens));
                assert!((many.loss - one.loss).abs() < 1e-6 * one.loss.abs(), "{name}: loss {} vs {}", many.loss, one.loss);
                let g = worst_relative(&one.grad, &many.grad);
                let f = match (&one.fisher, &many.fisher) {
                    (Some(a), Some(b)) => worst_relative(a, b),
                    (None, None) => 0.0,
                    _ => panic!("{name}: the Fisher diagonal on one side only"),
                };
                let mut worst_score = 0.0f64;
                for importance in [Importance::TaylorVector, Importance::TaylorElement1, Importance::TaylorElement2, Importance::TaylorMix] {
                    if importance.needs_fisher() && !fisher {
                        continue;
                    }
                    let a = score(&model, Some(&one), importance, Aggregation::Sum, 0).unwrap();
                    let b = score(&model, Some(many), importance, Aggregation::Sum, 0).unwrap();
                    worst_score = worst_score.max(compare_scores(&model, &a, &b));
                }
                println!("{name} fisher {fisher} micro-batch {micro_batch}, {n} peers: gradient {g:.1e}, Fisher {f:.1e}, scores {worst_score:.1e}");
                assert!(g < 1e-6 && f < 1e-6 && worst_score < 1e-6, "{name}: {g:e} {f:e} {worst_score:e}");
            }
        }
    }
}

/// Each estimator's scores from a streamed calibration on `n` peers (each peer's own, which
/// must be equal).
fn streamed_scores(model: &Model, samples: &[Vec<u32>], scope: &(dyn Fn(&Group) -> bool + Sync), fisher: bool, n: usize) -> Vec<Scores> {
    let estimators: Vec<Importance> = [Importance::TaylorElement1, Importance::TaylorElement2, Importance::TaylorVector]
        .into_iter()
        .filter(|i| fisher || !i.needs_fisher())
        .collect();
    let axes = scored_axes(model, scope);
    let opts = StreamOptions { fisher, wanted: axes.keys().cloned().collect(), micro_batch: 1 };
    let run = runtime::run_peers::<Cpu, _>(&peers(n), None, TIMEOUT, |peer: &mut Peer<Cpu>| {
        let mut saliences: Vec<Saliences> = estimators.iter().map(|_| Saliences::new()).collect();
        runtime::calibrate_streamed_on::<CpuAutodiff>(
            model,
            peer,
            samples,
            &opts,
            |name, grads| {
                let p = model.params.get(name).unwrap();
                let w = model.params.read_f32(name).unwrap();
                for (s, &importance) in saliences.iter_mut().zip(&estimators) {
                    s.fold(importance, name, &w, &p.shape, &axes[name], &grads).unwrap();
                }
                Ok(())
            },
            |_| {},
        )?;
        Ok(estimators.iter().zip(saliences).map(|(&i, s)| score_with(model, s, i, Aggregation::Sum, 0, scope).unwrap()).collect::<Vec<_>>())
    })
    .unwrap();
    for other in &run.results[1..] {
        assert_eq!(other, &run.results[0], "every peer's sink gets the same sums");
    }
    run.results.into_iter().next().unwrap()
}

#[test]
fn peers_stream_as_one_peer() {
    // llama-gqa ties its embedding: the hidden group's table is looked up (rows) and read by the head
    for name in ["llama-gqa", "llama-mha"] {
        let model = model(name);
        let samples = samples(name);
        for mode in [Mode::Channel, Mode::Block] {
            let opts = PruneOptions {
                amount: Amount::Ratio(0.2),
                mode,
                attn_layers: None,
                mlp_layers: None,
                allocate: Allocate::Uniform,
                gqa: Gqa::KvHeads,
                round_to: 1,
                uniform: false,
            };
            let scope = |g: &Group| opts.prunes(g);
            for fisher in [true, false] {
                let one = streamed_scores(&model, &samples, &scope, fisher, 1);
                let two = streamed_scores(&model, &samples, &scope, fisher, 2);
                for (a, b) in one.iter().zip(&two) {
                    let worst = compare_scores(&model, a, b);
                    println!("{name} {mode:?} fisher {fisher} {:?}: 2 peers vs 1, {worst:.1e}", a.importance);
                    assert!(worst < 1e-6, "{name} {mode:?} {:?}: {worst:e}", a.importance);
                }
            }
        }
    }
}

/// LoRA recovery on 2 and 3 peers takes the steps one peer takes, bit for bit, with dropout too:
/// a micro-batch's masks are drawn from its own seed, whichever peer runs it.
#[test]
fn peers_train_lora_as_one_peer() {
    for dropout in [0.0, 0.05] {
        peers_train_lora_as_one_peer_with(dropout);
    }
}

fn peers_train_lora_as_one_peer_with(dropout: f32) {
    let mut model = prunec_frontends::load(&fixture("llama-mha")).unwrap();
    let opts = prunec_passes::lora::LoraOptions { dropout, seed: 3, ..prunec_passes::lora::LoraOptions::targeting(&prunec_frontends::arch::lora_targets(&model)) };
    prunec_passes::lora::add_adapters(&mut model, &opts).unwrap();
    let trainable: Vec<String> = prunec_passes::lora::adapters(&model).iter().flat_map(|a| [a.a.clone(), a.b.clone()]).collect();
    let rows = samples("llama-mha");
    let targets: Vec<Vec<bool>> = rows.iter().map(|r| (0..r.len()).map(|t| t > 0).collect()).collect();
    let train: Vec<Sample<'_>> = rows.iter().zip(&targets).map(|(ids, t)| Sample { ids, targets: t }).collect();
    let opts = TrainOptions { steps: 20, batch_size: 4, micro_batch_size: 1, lr: 1e-2, ..TrainOptions::default() };
    let run = |n: usize| {
        let run = runtime::run_peers::<Cpu, _>(&peers(n), None, TIMEOUT, |peer| {
            runtime::train_on::<CpuAutodiff>(&model, peer, &trainable, &train, &[], None, &opts, &mut ())
        })
        .unwrap();
        let stores: Vec<BTreeMap<String, Vec<f32>>> = run
            .results
            .iter()
            .map(|(store, _)| store.iter().map(|(n, _)| (n.clone(), store.read_f32(n).unwrap().to_vec())).collect())
            .collect();
        for other in &stores[1..] {
            assert_eq!(other, &stores[0], "every peer ends with the same adapters");
        }
        (stores[0].clone(), run.results[0].1.step_losses.clone())
    };
    let (one, losses_one) = run(1);
    assert_eq!(run(1).0, one, "one peer is deterministic");
    for n in [2, 3] {
        let (many, losses) = run(n);
        let worst = worst_relative(&one, &many);
        let loss = losses_one.iter().zip(&losses).map(|(a, b)| (a - b).abs() / a.abs()).fold(0.0f64, f64::max);
        println!("LoRA, dropout {dropout}, 20 steps, {n} peers vs 1: adapters {worst:.1e}, step losses {loss:.1e}; loss {} → {}", losses[0], losses[19]);
        assert!(worst < 1e-5, "{n} peers: {worst:e}");
        assert!(loss < 1e-5, "{n} peers: {loss:e}");
        assert!(losses[19] < losses[0], "the adapters learn: {losses:?}");
    }
}

/// `n` rows of `len` token ids (below the fixtures' vocabulary of 256), as JSONL in `dir`.
fn ids_jsonl(dir: &std::path::Path, n: usize, len: usize) -> std::path::PathBuf {
    let path = dir.join(format!("ids-{n}x{len}.jsonl"));
    let mut rng = prunec_ir::rng::SplitMix64::new(11);
    let rows: String = (0..n)
        .map(|_| format!("{{\"input_ids\": {:?}}}\n", (0..len).map(|_| rng.below(256)).collect::<Vec<_>>()))
        .collect();
    std::fs::write(&path, rows).unwrap();
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Scores of a `--scores-out` file, by (layer, kind, unit).
fn scores_file(path: &std::path::Path) -> BTreeMap<String, f64> {
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (format!("{} {} {}", u["layer"], u["kind"], u["unit"]), u["score"].as_f64().unwrap()))
        .collect()
}

fn assert_same_scores(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>, what: &str) {
    assert!(a.keys().eq(b.keys()), "{what}: other units scored ({} and {})", a.len(), b.len());
    let scale = a.values().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    let worst = a.iter().map(|(k, v)| (v - b[k]).abs() / scale).fold(0.0f64, f64::max);
    println!("{what}: scores {worst:.1e} apart (relative to the largest)");
    assert!(worst < 1e-6, "{what}: {worst:e}");
}

fn digest(stderr: &str, what: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{what} digest ")))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("no {what} digest in:\n{stderr}"))
}

/// The recipe on a fixture, with `extra` arguments; returns the scores, the written model's
/// bytes and stderr.
fn recipe(dir: &std::path::Path, tag: &str, extra: &[&str]) -> (BTreeMap<String, f64>, Vec<u8>, String) {
    let mut args = recipe_args(dir, tag, 10);
    args.extend(extra.iter().map(|s| s.to_string()));
    let run = prunec(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (_, err) = texts(&run);
    assert!(run.status.success(), "{tag}: {err}");
    (scores_file(&dir.join(format!("{tag}.json"))), std::fs::read(dir.join(tag).join("model.safetensors")).unwrap(), err)
}

/// The recipe's arguments on the llama-gqa fixture, `samples` rows of 12 ids, writing the
/// scores to `TAG.json` and the model to the folder `TAG` in `dir`.
fn recipe_args(dir: &std::path::Path, tag: &str, samples: usize) -> Vec<String> {
    let ids = ids_jsonl(dir, samples, 12);
    let (scores, out) = (dir.join(format!("{tag}.json")), dir.join(tag));
    vec![
        fixture("llama-gqa").to_str().unwrap().to_string(),
        "--pass".into(),
        "group,score,prune".into(),
        "--ratio".into(),
        "0.25".into(),
        "--calib".into(),
        ids.to_str().unwrap().into(),
        "--calib-samples".into(),
        samples.to_string(),
        "--scores-out".into(),
        scores.to_str().unwrap().into(),
        "-o".into(),
        out.to_str().unwrap().into(),
    ]
}

#[test]
fn devices_split_calibration_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (one, model_one, _) = recipe(dir.path(), "one", &[]);
    let (two, model_two, err) = recipe(dir.path(), "two", &["--devices", "cpu:0,cpu:1"]);
    assert_same_scores(&one, &two, "--devices cpu:0,cpu:1");
    assert_eq!(model_one, model_two, "the same units pruned: the same file");
    assert!(err.contains("peer 0 (cpu:0): computed") && err.contains("peer 1 (cpu:1): computed"), "{err}");
    digest(&err, "calibration");
    // streamed (a budget smaller than the model) splits the same way
    let (streamed_one, model_one, _) = recipe(dir.path(), "streamed-one", &["--max-memory", "64KiB"]);
    let (streamed, model_two, err) = recipe(dir.path(), "streamed", &["--devices", "cpu:0,cpu:1", "--max-memory", "64KiB"]);
    assert!(err.contains("(streamed)"), "{err}");
    assert_same_scores(&streamed_one, &streamed, "--devices cpu:0,cpu:1, streamed");
    assert_eq!(model_one, model_two, "streamed: the same units pruned");
    // bad lists are refused before any work
    let bad = prunec(&[fixture("llama-gqa").to_str().unwrap(), "--pass", "group", "--devices", "cpu:0,tpu:1"]);
    common::assert_usage_error(&bad, &["tpu"]);
    let bad = prunec(&[fixture("llama-gqa").to_str().unwrap(), "--pass", "group", "--world-size", "2"]);
    common::assert_clean_failure(&bad, &["--coordinator"]);
}

/// Starts one rank of the recipe over the loopback address.
fn start_rank(dir: &std::path::Path, rank: u32, coordinator: &str, node_port: u16, timeout: &str, tag: &str, samples: usize) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_prunec"))
        .args(recipe_args(dir, tag, samples))
        .args([
            "--world-size",
            "2",
            "--rank",
            &rank.to_string(),
            "--coordinator",
            coordinator,
            "--node-address",
            &format!("127.0.0.1:{node_port}"),
            "--peer-timeout",
            timeout,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn two_processes_over_loopback_compute_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let (one, model_one, _) = recipe(dir.path(), "one", &[]);
    let coordinator = format!("127.0.0.1:{}", free_port());
    let r0 = start_rank(dir.path(), 0, &coordinator, free_port(), "120", "rank0", 10);
    let r1 = start_rank(dir.path(), 1, &coordinator, free_port(), "120", "rank1", 10);
    let (o0, o1) = (r0.wait_with_output().unwrap(), r1.wait_with_output().unwrap());
    let (e0, e1) = (String::from_utf8_lossy(&o0.stderr).into_owned(), String::from_utf8_lossy(&o1.stderr).into_owned());
    assert!(o0.status.success(), "rank 0: {e0}");
    assert!(o1.status.success(), "rank 1: {e1}");
    assert_eq!(digest(&e0, "calibration"), digest(&e1, "calibration"), "both ranks hold the same gradients");
    assert_same_scores(&one, &scores_file(&dir.path().join("rank0.json")), "2 processes");
    assert_eq!(std::fs::read(dir.path().join("rank0/model.safetensors")).unwrap(), model_one, "the same units pruned: the same file");
    assert!(!dir.path().join("rank1").exists() && e1.contains("written by rank 0"), "rank 1 writes nothing: {e1}");
}

#[test]
fn a_killed_rank_ends_the_other_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator = format!("127.0.0.1:{}", free_port());
    let timeout = 15.0;
    let started = Instant::now();
    // enough samples that calibrating takes seconds: rank 1 dies in the middle of it
    let r0 = start_rank(dir.path(), 0, &coordinator, free_port(), "15", "rank0", 3000);
    let mut r1 = start_rank(dir.path(), 1, &coordinator, free_port(), "15", "rank1", 3000);
    let mut lines = BufReader::new(r1.stderr.take().unwrap()).lines();
    let joined = lines.by_ref().map_while(Result::ok).any(|l| l.contains("peers joined"));
    r1.kill().unwrap();
    r1.wait().unwrap();
    let out = r0.wait_with_output().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("rank 1 joined: {joined}; rank 0 exited after {elapsed:.1} s; its stderr:\n{err}");
    assert!(!out.status.success(), "rank 0 must fail: {err}");
    assert!(err.contains("error:") && err.contains("peers:") && !err.contains("panicked"), "{err}");
    assert!(elapsed < timeout + 60.0, "rank 0 took {elapsed:.1} s");
    assert!(joined, "rank 1 joined before it was killed");
    assert!(!dir.path().join("rank0").exists(), "no output from a failed run");
}

/// Prune, LoRA recovery (20 steps, 4 micro-batches a step) and merge from the command line:
/// `--devices cpu:0,cpu:1` trains the adapters one peer trains, bit for bit.
#[test]
fn devices_split_recovery_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ids_jsonl(dir.path(), 12, 12);
    let run = |tag: &str, extra: &[&str]| {
        let (adapter, out) = (dir.path().join(format!("adapter-{tag}")), dir.path().join(format!("out-{tag}")));
        let mut args = vec![
            fixture("llama-mha").to_str().unwrap().to_string(),
            "--pass".into(),
            "group,score,prune,lora,recover,merge".into(),
            "--importance".into(),
            "l2".into(),
            "--ratio".into(),
            "0.2".into(),
            "--train-text".into(),
            ids.to_str().unwrap().into(),
            "--cutoff-len".into(),
            "12".into(),
            "--val-set-size".into(),
            "2".into(),
            "--batch-size".into(),
            "4".into(),
            "--micro-batch-size".into(),
            "1".into(),
            "--steps".into(),
            "20".into(),
            "--lr".into(),
            "1e-2".into(),
            "--lora-dropout".into(),
            "0".into(),
            "--adapter-out".into(),
            adapter.to_str().unwrap().into(),
            "-o".into(),
            out.to_str().unwrap().into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let r = prunec(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let (_, err) = texts(&r);
        assert!(r.status.success(), "{tag}: {err}");
        let tensors = std::fs::read(adapter.join("adapter_model.safetensors")).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&tensors).unwrap();
        let mut values: Vec<(String, Vec<u8>)> = tensors.tensors().into_iter().map(|(n, t)| (n, t.data().to_vec())).collect();
        values.sort();
        (values, std::fs::read(out.join("model.safetensors")).unwrap(), err)
    };
    let (one, merged_one, _) = run("one", &[]);
    let report = dir.path().join("report.json");
    let (two, merged_two, err) = run("two", &["--devices", "cpu:0,cpu:1", "--report", report.to_str().unwrap()]);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let peers = &report["training"]["peers"];
    assert_eq!(peers["count"], 2, "{peers}");
    assert!(peers["local"].as_array().unwrap().iter().all(|p| p["communicate_s"].as_f64().is_some() && p["all_reduce_calls"].as_u64() > Some(0)), "{peers}");
    assert_eq!(one.len(), 56, "28 adapters");
    assert!(one == two, "2 peers train other adapters than 1");
    assert_eq!(merged_one, merged_two, "the same merged model");
    digest(&err, "adapters");
    assert!(err.contains("peer 1 (cpu:1): computed"), "{err}");
}

/// LLM-Pruner's recipe on SmolLM2-135M (taylor-element1, block-wise, layers 3..27, the
/// embedded 10 × 64 calibration tokens) with `--devices cpu:0,cpu:1` against one peer.
#[test]
fn smollm2_two_local_peers_prune_as_one() {
    let Some(path) = common::smollm2() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = |tag: &str, extra: &[&str]| {
        let (scores, out) = (dir.path().join(format!("{tag}.json")), dir.path().join(format!("{tag}.gguf")));
        let mut args = vec![
            path.to_str().unwrap(),
            "--pass",
            "group,score,prune",
            "--importance",
            "taylor-element1",
            "--unit-ratio",
            "0.2",
            "--gqa",
            "query",
            "--attn-layers",
            "3..27",
            "--mlp-layers",
            "3..27",
            "--scores-out",
            scores.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        let r = prunec(&args);
        let (_, err) = texts(&r);
        assert!(r.status.success(), "{tag}: {err}");
        (scores_file(&scores), std::fs::read(&out).unwrap(), err)
    };
    let (one, model_one, _) = run("one", &[]);
    let (two, model_two, err) = run("two", &["--devices", "cpu:0,cpu:1"]);
    assert_same_scores(&one, &two, "SmolLM2, 2 local peers");
    assert_eq!(model_one, model_two, "SmolLM2: the same units pruned, the same file");
    println!("{}", err.lines().filter(|l| l.starts_with("peer ") || l.contains("digest")).collect::<Vec<_>>().join("\n"));
}
