//! Text generation with a key/value cache: greedy, or sampling with temperature and top-p.

use prunec_ir::rng::SplitMix64;

use super::exec::{Executor, KvCache};
use super::fused::Fused;
use crate::{BackendError, Result};

/// How to choose each next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Tokens to generate at most.
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 chooses greedily.
    pub temperature: f32,
    /// Nucleus: sample among the most likely tokens whose probabilities add up to `top_p`.
    pub top_p: f32,
    /// Seed of the sampler.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { max_new_tokens: 32, temperature: 0.0, top_p: 1.0, seed: 0 }
    }
}

/// The token to emit after `logits`.
pub fn choose(logits: &[f32], s: &Sampling, rng: &mut SplitMix64) -> u32 {
    let argmax = || logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0 as u32;
    if s.temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(u32, f64)> =
        logits.iter().enumerate().map(|(i, &v)| (i as u32, f64::from((v - max) / s.temperature).exp())).collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut kept = 0.0;
    let mut cut = probs.len();
    for (k, p) in probs.iter().enumerate() {
        kept += p.1 / total;
        if kept >= f64::from(s.top_p) {
            cut = k + 1;
            break;
        }
    }
    probs.truncate(cut.max(1));
    let mass: f64 = probs.iter().map(|p| p.1).sum();
    let mut x = rng.next_f64() * mass;
    for (id, p) in &probs {
        x -= p;
        if x < 0.0 {
            return *id;
        }
    }
    probs.last().map_or_else(argmax, |p| p.0)
}

/// Generates after `prompt`, calling `on_token` with each new token; stops at `eos`.
pub fn generate<B: Fused>(
    exec: &Executor<B>,
    prompt: &[u32],
    sampling: &Sampling,
    eos: Option<u32>,
    mut on_token: impl FnMut(u32),
) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        return Err(BackendError::Lowering("an empty prompt".into()));
    }
    let mut rng = SplitMix64::new(sampling.seed);
    let mut cache = KvCache::default();
    let mut input = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..sampling.max_new_tokens {
        let logits = exec.forward_cached(exec.ids(&[input.clone()])?, &mut cache)?;
        let [_, s, v] = logits.dims();
        let last = logits.narrow(1, s - 1, 1).reshape([v]);
        let values = last.into_data().convert::<f32>().into_vec::<f32>().map_err(|e| BackendError::Lowering(format!("{e:?}")))?;
        let next = choose(&values, sampling, &mut rng);
        if Some(next) == eos {
            break;
        }
        on_token(next);
        out.push(next);
        input = vec![next];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_largest() {
        let s = Sampling::default();
        assert_eq!(choose(&[0.1, 3.0, -2.0, 2.9], &s, &mut SplitMix64::new(0)), 1);
    }

    #[test]
    fn tiny_top_p_is_greedy_and_sampling_is_seeded() {
        let s = Sampling { temperature: 1.0, top_p: 1e-6, ..Sampling::default() };
        assert_eq!(choose(&[0.1, 3.0, -2.0, 2.9], &s, &mut SplitMix64::new(5)), 1);
        let s = Sampling { temperature: 1.0, top_p: 1.0, ..Sampling::default() };
        let draw = |seed| (0..50).map(|_| 0).fold((Vec::new(), SplitMix64::new(seed)), |(mut v, mut r), _: i32| {
            v.push(choose(&[0.0, 0.0, 0.0, 0.0], &s, &mut r));
            (v, r)
        }).0;
        assert_eq!(draw(3), draw(3));
        assert!(draw(3).iter().any(|&t| t != draw(3)[0]), "uniform logits give varied tokens");
    }
}
