//! Calibration statistics against LLM-Pruner's own: on `llama-mha` with the golden rows as the
//! two calibration samples, the batch gradient is HF's golden gradient and the Fisher diagonal
//! is LLM-Pruner's `acc_grad` (`(g₀² + g₁²)/2` from one backward per sample), see the
//! fixtures README §6.

mod common;

use common::{fixture, golden, GoldenFile};
use prunec_backends::runtime::{calibrate, cpu, CalibrationOptions, CpuAutodiff};

/// Largest difference relative to the reference tensor's largest magnitude.
fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) / scale
}

#[test]
fn gradient_and_fisher_match_llm_pruner() {
    let model = prunec_frontends::load(&fixture("llama-mha")).unwrap();
    let golden = golden("llama-mha");
    let rows = golden.rows("input_ids");
    let acc = GoldenFile::read(&fixture("llm-pruner-importance-acc-grad.safetensors"));
    let mut calls = 0;
    let stats = calibrate::<CpuAutodiff>(&model, &cpu(), &rows, CalibrationOptions { fisher: true, micro_batch: 4, wanted: None }, |_, _| calls += 1)
        .unwrap();
    assert_eq!((stats.samples, stats.tokens, calls), (2, 22, 2), "one backward per sample");
    assert!((stats.loss - 7.0955033).abs() < 1e-5, "{}", stats.loss);
    for (name, g) in &stats.grad {
        let e = rel_err(g, golden.floats(&format!("grad.{name}")));
        assert!(e < 1e-4, "grad {name}: {e}");
    }
    let fisher = stats.fisher.as_ref().unwrap();
    assert_eq!(acc.f32.len(), 14);
    for (key, (_, want)) in &acc.f32 {
        let name = key.strip_prefix("acc_grad.").unwrap();
        let e = rel_err(&fisher[name], want);
        assert!(e < 1e-4, "fisher {name}: {e}");
    }
}

#[test]
fn micro_batched_gradient_equals_per_sample_gradient() {
    let model = prunec_frontends::load(&fixture("llama-gqa")).unwrap();
    let golden = golden("llama-gqa");
    let rows = golden.rows("input_ids");
    let batched = calibrate::<CpuAutodiff>(&model, &cpu(), &rows, CalibrationOptions { fisher: false, micro_batch: 2, wanted: None }, |_, _| {}).unwrap();
    assert!(batched.fisher.is_none());
    for (name, g) in &batched.grad {
        assert!(rel_err(g, golden.floats(&format!("grad.{name}"))) < 1e-4, "{name}");
    }
}

#[test]
fn samples_too_short_are_refused() {
    let model = prunec_frontends::load(&fixture("llama-gqa")).unwrap();
    let e = calibrate::<CpuAutodiff>(&model, &cpu(), &[vec![1]], CalibrationOptions::default(), |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("at least 2 tokens"), "{e}");
}

/// Gradients of some parameters only: the others get none (they are constants of the backward
/// pass), and the wanted ones are those of a calibration of every parameter, bit for bit.
#[test]
fn gradients_of_the_wanted_parameters_only() {
    for fixture_name in ["llama-mha", "chatglm2-6b"] {
        let model = prunec_frontends::load(&fixture(fixture_name)).unwrap();
        let rows = golden(fixture_name).rows("input_ids");
        for fisher in [false, true] {
            let run = |wanted| {
                let options = CalibrationOptions { fisher, micro_batch: 4, wanted };
                calibrate::<CpuAutodiff>(&model, &cpu(), &rows, options, |_, _| {}).unwrap()
            };
            let full = run(None);
            // the second layer's parameters (no embedding, head or first layer)
            let wanted: Vec<String> = full.grad.keys().filter(|n| n.contains(".1.")).cloned().collect();
            assert!(!wanted.is_empty() && wanted.len() * 2 < full.grad.len(), "{fixture_name}: {wanted:?}");
            let some = run(Some(wanted.clone()));
            assert_eq!(some.loss.to_bits(), full.loss.to_bits());
            let stats = [(&some.grad, &full.grad)].into_iter().chain(some.fisher.as_ref().zip(full.fisher.as_ref()));
            assert_eq!(stats.clone().count(), 1 + usize::from(fisher));
            for (some, full) in stats {
                assert!(some.keys().eq(wanted.iter()), "{fixture_name}: {:?}", some.keys());
                for name in &wanted {
                    let (a, b) = (&some[name], &full[name]);
                    assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "{fixture_name} {name}");
                }
            }
        }
    }
}
