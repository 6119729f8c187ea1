//! GGUF input: the same model read from a GGUF file and from its HF folder gives the same
//! parameters and the same groups; the real SmolLM2-135M reads and groups as expected.

mod common;

use common::{assert_clean_failure, fixture, prunec, smollm2, texts};
use prunec_ir::{GroupKind, Model};

fn grouped(path: &std::path::Path) -> Model {
    let mut model = prunec_frontends::load(path).expect("the model loads");
    prunec_passes::run_group(&mut model).expect("group runs");
    model
}

/// `tests/fixtures/gguf/llama-gqa.gguf` was converted from `tests/fixtures/llama-gqa` by
/// gguf-py as llama.cpp's converter does (q/k rows permuted), see `make_fixtures.py`.
#[test]
fn gguf_and_hf_of_one_model_agree() {
    let hf = grouped(&fixture("llama-gqa"));
    let gguf = grouped(&fixture("gguf/llama-gqa.gguf"));
    // same parameters, bit for bit, in HF's layout
    let names: Vec<&String> = hf.params.iter().map(|(n, _)| n).collect();
    assert_eq!(names, gguf.params.iter().map(|(n, _)| n).collect::<Vec<_>>());
    for name in names {
        assert_eq!(hf.params.get(name).unwrap().shape, gguf.params.get(name).unwrap().shape, "{name}");
        let (a, b) = (hf.params.read_f32(name).unwrap(), gguf.params.read_f32(name).unwrap());
        assert!(a.iter().zip(b.iter()).all(|(x, y)| x.to_bits() == y.to_bits()), "{name} differs");
    }
    // same graph and groups: the dependency IR prints the same, but for the header line
    let body = |m: &Model| prunec_ir::print(m).unwrap().lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&hf), body(&gguf));
    assert_eq!(hf.groups, gguf.groups);
}

/// Qwen2, Qwen3 and ChatGLM2 from GGUF (`scripts/make-arch-gguf`: gguf-py's tensor names for
/// llama.cpp's `qwen2`, `qwen3` and `chatglm`, rows as HF has them): the HF model's parameters
/// bit for bit, its graph and its groups.
#[test]
fn gguf_and_hf_of_the_other_architectures_agree() {
    for (name, arch) in [("qwen2", "qwen2"), ("qwen3", "qwen3"), ("chatglm2-6b", "chatglm")] {
        let hf = grouped(&fixture(name));
        let gguf = grouped(&fixture(&format!("gguf/{name}.gguf")));
        assert_eq!(gguf.info.architecture, arch);
        let names: Vec<&String> = hf.params.iter().map(|(n, _)| n).collect();
        assert_eq!(names, gguf.params.iter().map(|(n, _)| n).collect::<Vec<_>>(), "{name}");
        for p in names {
            let (a, b) = (hf.params.read_f32(p).unwrap(), gguf.params.read_f32(p).unwrap());
            assert!(a.iter().zip(b.iter()).all(|(x, y)| x.to_bits() == y.to_bits()), "{name}: {p} differs");
        }
        let body = |m: &Model| prunec_ir::print(m).unwrap().lines().skip(1).collect::<Vec<_>>().join("\n");
        assert_eq!(body(&hf), body(&gguf), "{name}");
        assert_eq!(hf.groups, gguf.groups, "{name}");
    }
}

/// A GGUF file holding a tensor its reader does not read is refused, naming it: the weight
/// would be left out without a word (as Llama 3.1's `rope_freqs.weight` was, before it was
/// read). And divisors in `rope_freqs.weight` that no Llama 3.1 scaling gives are refused.
#[test]
fn gguf_tensors_the_reader_would_leave_out_are_refused() {
    let bytes = std::fs::read(fixture("gguf/llama-rope.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let at = bytes.windows(10).position(|w| w == b"rope_freqs").unwrap();
    let mut renamed = bytes.clone();
    renamed[at..at + 10].copy_from_slice(b"rope_extra");
    let path = dir.path().join("extra.gguf");
    std::fs::write(&path, &renamed).unwrap();
    let out = prunec(&[path.to_str().unwrap(), "--pass", "group"]);
    assert_clean_failure(&out, &["extra.gguf", "rope_extra.weight", "does not use this tensor"]);
    // the 8 divisors (f32): the last ones are the factor 8; make one of them 3
    let eight = 8.0f32.to_le_bytes();
    let run = bytes.windows(28).position(|w| w.chunks(4).all(|c| c == eight)).unwrap();
    let mut bent = bytes.clone();
    bent[run + 12..run + 16].copy_from_slice(&3.0f32.to_le_bytes());
    let path = dir.path().join("bent.gguf");
    std::fs::write(&path, &bent).unwrap();
    let out = prunec(&[path.to_str().unwrap(), "--pass", "group"]);
    assert_clean_failure(&out, &["bent.gguf", "rope_freqs.weight", "not Llama 3.1's rotary scaling"]);
}

/// `tests/fixtures/gguf/phi3.gguf` was converted from `tests/fixtures/phi3` by gguf-py as
/// llama.cpp's converter converts a Phi-3 (`make_phi3.py`: the fused `attn_qkv` and `ffn_up`
/// kept fused, no rows permuted, `rope.dimension_count` 12 of 16): the same parameters, graph,
/// groups, logits and configuration.
#[test]
fn phi3_gguf_and_hf_of_one_model_agree() {
    use prunec_backends::runtime::{cpu, Cpu, Executor};
    let hf = grouped(&fixture("phi3"));
    let gguf = grouped(&fixture("gguf/phi3.gguf"));
    assert_eq!(gguf.info.architecture, "phi3");
    let names: Vec<&String> = hf.params.iter().map(|(n, _)| n).collect();
    assert_eq!(names, gguf.params.iter().map(|(n, _)| n).collect::<Vec<_>>());
    for name in names {
        assert_eq!(hf.params.get(name).unwrap().shape, gguf.params.get(name).unwrap().shape, "{name}");
        let (a, b) = (hf.params.read_f32(name).unwrap(), gguf.params.read_f32(name).unwrap());
        assert!(a.iter().zip(b.iter()).all(|(x, y)| x.to_bits() == y.to_bits()), "{name} differs");
    }
    let body = |m: &Model| prunec_ir::print(m).unwrap().lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&hf), body(&gguf));
    assert_eq!(hf.groups, gguf.groups);
    let ids = common::golden("phi3").rows("input_ids");
    let logits = |m: &Model| -> Vec<f32> {
        let exec = Executor::<Cpu>::new(m, &cpu()).unwrap();
        exec.forward(exec.ids(&ids).unwrap()).unwrap().into_data().into_vec().unwrap()
    };
    let (a, b) = (logits(&hf), logits(&gguf));
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    println!("phi3: GGUF and HF logits differ by {diff:e}");
    assert_eq!(diff, 0.0);
    // the configuration the metadata gives is the HF one
    use prunec_frontends::arch::phi3::{hf_config, Phi3Config};
    let path = std::path::Path::new("config.json");
    let from_gguf = Phi3Config::from_hf_json(path, &hf_config(&gguf).unwrap()).unwrap();
    assert_eq!(from_gguf, Phi3Config::from_hf_json(path, &hf_config(&hf).unwrap()).unwrap());
    assert_eq!((from_gguf.rotary_dims, from_gguf.decoder.variant.sliding_window), (12, Some(5)));
    // no padding token in its metadata: none in the config (transformers' default, 32000, is
    // outside the 256 tokens)
    assert!(hf_config(&gguf).unwrap()["pad_token_id"].is_null());
}

#[test]
fn every_truncation_of_a_gguf_is_a_clean_error() {
    let bytes = std::fs::read(fixture("gguf/llama-gqa.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.gguf");
    for cut in [0, 3, 4, 8, 20, 100, 1000, 5000, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let out = prunec(&[path.to_str().unwrap(), "--pass", "group"]);
        assert_clean_failure(&out, &["cut.gguf"]);
    }
}

#[test]
fn gguf_of_another_architecture_is_refused() {
    // rewrite `general.architecture = llama` as `falcon` (same length, same file layout)
    let bytes = std::fs::read(fixture("gguf/llama-gqa.gguf")).unwrap();
    let key = b"general.architecture";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
    let value = at + key.len() + 4 + 8; // key, value type (u32), string length (u64)
    assert_eq!(&bytes[value..value + 5], b"llama");
    let mut edited = bytes.clone();
    edited[value..value + 5].copy_from_slice(b"bloom");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bloom.gguf");
    std::fs::write(&path, &edited).unwrap();
    let out = prunec(&[path.to_str().unwrap(), "--pass", "group"]);
    assert_clean_failure(&out, &["bloom.gguf", "unsupported architecture `bloom`", "supported: llama"]);
}

#[test]
fn smollm2_groups() {
    let Some(path) = smollm2() else { return };
    let model = grouped(&path);
    assert_eq!(model.params.numel(), 134_515_008, "as the fixtures README counts it");
    let groups = model.groups.as_ref().unwrap();
    let of = |k: GroupKind| groups.iter().filter(move |g| g.kind == k);
    assert_eq!(of(GroupKind::Attention).count(), 30);
    for g in of(GroupKind::Attention) {
        assert_eq!(g.units.len(), 3, "3 key/value heads");
        assert!(g.units.iter().all(|u| u.sub_units.len() == 3), "3 query heads share each");
    }
    assert_eq!(of(GroupKind::Mlp).count(), 30);
    assert!(of(GroupKind::Mlp).all(|g| g.units.len() == 1536));
    let hidden: Vec<_> = of(GroupKind::Hidden).collect();
    assert_eq!(hidden.len(), 1);
    assert_eq!(hidden[0].units.len(), 576);

    // the CLI says the same
    let out = prunec(&[path.to_str().unwrap(), "--pass", "group"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("61 dependency groups"), "{stdout}");
}
