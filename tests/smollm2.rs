//! The real SmolLM2-135M-Instruct, read from its GGUF (Q4_1/Q8_0 dequantized as llama.cpp
//! does), against the golden data made with HF transformers from the same file
//! (`tests/fixtures/smollm2/`, see the fixtures README §7): last-position logits of three
//! prompts (1e-3 absolute), top-20 log-probabilities at every position (1e-4), the tokens of
//! the perplexity text (exact) and its perplexity (0.5%; measured 1e-5 or better).

mod common;

use prunec_backends::burn::tensor::activation::log_softmax;
use common::{fixture, smollm2, GoldenFile};
use prunec_backends::runtime::{cpu, perplexity, Cpu, Executor};
use prunec_frontends::tokenizer::Tokenizer;

#[test]
fn smollm2_prompts_match_golden_logits() {
    let Some(path) = smollm2() else { return };
    let model = prunec_frontends::load(&path).unwrap();
    let tok = Tokenizer::for_model(&path).unwrap();
    let g = GoldenFile::read(&fixture("smollm2/golden.safetensors"));
    let exec = Executor::<Cpu>::new(&model, &cpu()).unwrap();
    let texts = ["The capital of France is", "Once upon a time, there was a little robot who", "To make a cup of tea, first you need to"];
    let vocab = 49152;
    for (i, text) in texts.iter().enumerate() {
        let ids = tok.encode(text).unwrap();
        let want_ids: Vec<u32> = g.rows(&format!("input_ids.{i}")).concat();
        assert_eq!(ids, want_ids, "prompt {i} tokens");
        let logits = exec.forward(exec.ids(std::slice::from_ref(&ids)).unwrap()).unwrap();
        let l = ids.len();
        let all: Vec<f32> = logits.clone().into_data().into_vec().unwrap();
        let last = &all[(l - 1) * vocab..l * vocab];
        let want = &g.floats("logits_last")[i * vocab..(i + 1) * vocab];
        let diff = last.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        println!("prompt {i}: max |Δ last logits| = {diff:e}");
        assert!(diff < 1e-3, "prompt {i}: {diff}");
        // top-20 log-probabilities at every position
        let logp: Vec<f32> = log_softmax(logits, 2).into_data().into_vec().unwrap();
        let top_ids = g.ints(&format!("logprobs_topk.{i}.ids"));
        let top_vals = g.floats(&format!("logprobs_topk.{i}.values"));
        let mut worst = 0.0f32;
        for pos in 0..l {
            for k in 0..20 {
                let id = top_ids[pos * 20 + k] as usize;
                worst = worst.max((logp[pos * vocab + id] - top_vals[pos * 20 + k]).abs());
            }
        }
        println!("prompt {i}: max |Δ top-20 log-probs| = {worst:e}");
        assert!(worst < 1e-4, "prompt {i}: {worst}");
    }
}

#[test]
fn smollm2_perplexity_matches_golden() {
    let Some(path) = smollm2() else { return };
    let model = prunec_frontends::load(&path).unwrap();
    let tok = Tokenizer::for_model(&path).unwrap();
    let g = GoldenFile::read(&fixture("smollm2/golden.safetensors"));
    let text = std::fs::read_to_string(fixture("smollm2/public.txt")).unwrap();
    let tokens = tok.encode(&text).unwrap();
    let want: Vec<u32> = g.rows("public_txt.token_ids").concat();
    assert_eq!(tokens, want);
    let ppl = perplexity::<Cpu>(&model, &cpu(), &tokens, 128, 8, |_, _| {}).unwrap();
    assert_eq!((ppl.windows, ppl.predicted), (59, 7493));
    let rel = (ppl.mean_nll - g.f64["public_txt.mean_nll"].1[0]).abs() / g.f64["public_txt.mean_nll"].1[0];
    println!("perplexity {} (golden {}), mean NLL relative error {rel:e}", ppl.perplexity, g.f64["public_txt.mean_nll"].1[0].exp());
    assert!((ppl.perplexity / g.f64["public_txt.mean_nll"].1[0].exp() - 1.0).abs() < 0.005);
}

/// LLM-Pruner's `--unit-ratio` counts on SmolLM2 (9 query heads over 3 key/value heads, 1536
/// MLP channels): r = 0.2 removes 576 − int(576·0.8) = 116 channels of q_proj, 1 whole head,
/// and 1536 − int(1536·0.8) = 308 MLP channels; whole key/value heads (192 channels) none.
#[test]
fn smollm2_unit_ratio_counts_as_llm_pruner() {
    use prunec_ir::GroupKind;
    use prunec_passes::prune::{select, Allocate, Amount, Gqa, Mode, PruneOptions};
    use prunec_passes::score::{score, Aggregation, Importance};
    let Some(path) = smollm2() else { return };
    let mut model = prunec_frontends::load(&path).unwrap();
    prunec_passes::run_group(&mut model).unwrap();
    let scores = score(&model, None, Importance::Random, Aggregation::Sum, 0).unwrap();
    for gqa in [Gqa::QueryHeads, Gqa::KvHeads] {
        let opts = PruneOptions { amount: Amount::UnitRatio(0.2), mode: Mode::Block, attn_layers: None, mlp_layers: None, allocate: Allocate::Uniform, gqa, round_to: 1, uniform: false };
        let sel = select(&model, &scores, &opts).unwrap();
        for (k, g) in model.groups.as_ref().unwrap().iter().enumerate() {
            let subs = sel.removed_sub.get(k).map_or(0, Vec::len);
            match g.kind {
                GroupKind::Attention if gqa == Gqa::QueryHeads => assert_eq!((sel.removed[k].len(), subs), (0, 1), "layer {:?}", g.block),
                GroupKind::Attention => assert_eq!((sel.removed[k].len(), subs), (0, 0)),
                GroupKind::Mlp => assert_eq!(sel.removed[k].len(), 308, "layer {:?}", g.block),
                GroupKind::Hidden => assert!(sel.removed[k].is_empty()),
            }
        }
    }
}
