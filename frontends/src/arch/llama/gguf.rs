//! GGUF files of LLaMA and the LLaMA-like families lowered through the LLaMA builder: the
//! metadata becomes a [`LlamaConfig`] (what differs read from which tensors the file holds:
//! q/k/v biases, per-head q/k norms), llama.cpp's tensor names become HF's, the q/k rows that
//! llama.cpp's converter permuted for its rotary layout (LLaMA's, not Qwen's) are put back in
//! HF's order when read, and Llama 3.1's rotary scaling is read back from the `rope_freqs`
//! divisors the converter writes. Every tensor of the file must be one the model reads.
//! Tensors stay quantized in the map until a pass reads them.

use std::path::Path;

use prunec_ir::{Model, Rope, RopeLayout, RopeScaling};

use crate::arch::gguf_out::{GgufPlan, Planned, PlannedTensor};
use crate::arch::{Config, GgufWeights};
use crate::gguf::GgufValue;
use crate::error::{FrontendError, Result};
use crate::gguf::GgufFile;
use super::{self as llama, Family, LlamaConfig, Variant};

/// How llama.cpp lays out a LLaMA-like family's GGUF files.
#[derive(Debug, Clone, Copy)]
pub struct GgufLayout {
    /// Its `general.architecture`.
    pub name: &'static str,
    /// llama.cpp's converter permuted the q/k rows for its interleaved rotary layout (LLaMA's
    /// and Mistral's files; Qwen's keep HF's order, llama.cpp rotating them as NeoX does).
    pub permuted: bool,
}

/// The tensor of Llama 3.1's rotary scaling in a GGUF file: one divisor per rotating pair.
const ROPE_FREQS: &str = "rope_freqs.weight";

/// The GGUF name of an HF LLaMA tensor, and the heads its rows were permuted for (when
/// `permuted`).
fn gguf_name(hf: &str, config: &LlamaConfig, permuted: bool) -> Option<(String, Option<usize>)> {
    let name = crate::arch::gguf_tensor_name(hf, LLAMA_DIRECT, "model.layers.", |module| {
        Some(match module {
            "input_layernorm" => "attn_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.q_norm" => "attn_q_norm",
            "self_attn.k_norm" => "attn_k_norm",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "post_attention_layernorm" => "ffn_norm",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            _ => return None,
        })
    })?;
    // the q/k rows llama.cpp's converter permuted, when it did (per layer: widths may differ)
    let layer = || hf.strip_prefix("model.layers.")?.split_once('.')?.0.parse::<usize>().ok();
    let heads = if !permuted {
        None
    } else if hf.contains(".self_attn.q_proj.") {
        Some(config.layer(layer()?).num_heads)
    } else if hf.contains(".self_attn.k_proj.") {
        Some(config.layer(layer()?).num_kv_heads)
    } else {
        None
    };
    Some((name, heads))
}

/// llama.cpp's names of the tensors outside the layers of LLaMA and the models shaped like it.
pub(crate) const LLAMA_DIRECT: &[(&str, &str)] =
    &[("model.embed_tokens.weight", "token_embd.weight"), ("model.norm.weight", "output_norm.weight"), ("lm_head.weight", "output.weight")];

/// The LLaMA configuration a GGUF file's metadata describes, with the variant its tensors
/// show: q/k/v biases without an o bias (Qwen2's), per-head q/k norms (Qwen3's).
pub fn config_from_metadata(file: &GgufFile) -> Result<LlamaConfig> {
    let arch = file.get_str("general.architecture")?.to_string();
    let key = |k: &str| format!("{arch}.{k}");
    let hidden_size = file.get_usize(&key("embedding_length"))?;
    let num_layers = file.get_usize(&key("block_count"))?;
    if num_layers > file.tensors().len() {
        // every layer has tensors: a larger count is wrong, and its widths would exhaust memory
        return Err(FrontendError::BadConfig {
            path: file.path().to_path_buf(),
            reason: format!("`{}` is {num_layers}, but the file holds only {} tensors", key("block_count"), file.tensors().len()),
        });
    }
    // llama.cpp reads these three as one value or one per layer (a pruned model's)
    let heads = per_layer(file, &key("attention.head_count"), num_layers)?;
    let kv_key = key("attention.head_count_kv");
    let kv_heads = if file.get(&kv_key).is_some() { per_layer(file, &kv_key, num_layers)? } else { heads.clone() };
    let ff = per_layer(file, &key("feed_forward_length"), num_layers)?;
    let top = |v: &[usize]| v.iter().copied().max().unwrap_or(0);
    let num_heads = top(&heads);
    let layer_widths: Vec<llama::LayerWidths> = (0..num_layers)
        .map(|l| llama::LayerWidths { num_heads: heads[l], num_kv_heads: kv_heads[l], intermediate_size: ff[l], query_heads_per_kv: None })
        .collect();
    let uniform = layer_widths.windows(2).all(|w| w[0] == w[1]);
    let opt_usize = |k: &str| if file.get(k).is_some() { file.get_usize(k).map(Some) } else { Ok(None) };
    let opt_f32 = |k: &str| if file.get(k).is_some() { file.get_f32(k).map(Some) } else { Ok(None) };
    let has = |t: &str| file.tensor_info(t).is_some();
    let vocab_size = match opt_usize(&key("vocab_size"))? {
        Some(v) => v,
        None => match file.tensor_info("token_embd.weight") {
            Some(t) => t.shape().first().copied().unwrap_or(0),
            None => {
                return Err(FrontendError::MissingTensor { path: file.path().to_path_buf(), tensor: "token_embd.weight".into() })
            }
        },
    };
    // llama.cpp's default: the embedding over the first layer's heads
    let head_dim = match opt_usize(&key("attention.key_length"))? {
        Some(d) => d,
        None if heads.first().is_some_and(|&h| h > 0) => hidden_size / heads[0],
        None => 0,
    };
    // LLaMA's `attention_bias` gives q, k, v and o biases; Qwen2's q/k/v ones come without o's
    let attention_bias = has("blk.0.attn_output.bias");
    let rope_theta = opt_f32(&key("rope.freq_base"))?.unwrap_or(10000.0);
    let mut config = LlamaConfig {
        vocab_size,
        hidden_size,
        intermediate_size: top(&ff),
        num_layers,
        num_heads,
        num_kv_heads: top(&kv_heads),
        head_dim,
        rms_norm_eps: opt_f32(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
        rope_theta,
        tie_word_embeddings: !has("output.weight"),
        attention_bias,
        mlp_bias: has("blk.0.ffn_gate.bias"),
        max_position_embeddings: opt_usize(&key("context_length"))?.unwrap_or(2048),
        layer_widths: (!uniform).then_some(layer_widths),
        variant: Variant {
            qkv_bias: has("blk.0.attn_q.bias") && !attention_bias,
            qk_norm: has("blk.0.attn_q_norm.weight"),
            sliding_window: None,
        },
        rope_scaling: RopeScaling::None,
    };
    if let Some(rot) = opt_usize(&key("rope.dimension_count"))? {
        if rot != config.head_dim {
            return Err(FrontendError::BadConfig {
                path: file.path().to_path_buf(),
                reason: format!("partial rotary ({rot} of {} dims) is not supported for {arch}", config.head_dim),
            });
        }
    }
    config.rope_scaling = rope_scaling(file, &arch, &config)?;
    config.validate(file.path())?;
    Ok(config)
}

/// The value of `key` for each of `layers` layers: one integer for all, or an array of one per
/// layer.
fn per_layer(file: &GgufFile, key: &str, layers: usize) -> Result<Vec<usize>> {
    let Some(crate::gguf::GgufValue::Array(items)) = file.get(key) else { return Ok(vec![file.get_usize(key)?; layers]) };
    let bad = |reason: String| FrontendError::BadConfig { path: file.path().to_path_buf(), reason: format!("`{key}` {reason}") };
    if items.len() != layers {
        return Err(bad(format!("lists {} values for {layers} layers", items.len())));
    }
    items
        .iter()
        .map(|v| v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| bad(format!("holds {v}, not a non-negative integer"))))
        .collect()
}

/// The rotary scaling of a GGUF file: `{arch}.rope.scaling.type` `linear` (its `factor`), or
/// Llama 3.1's, which llama.cpp's converter writes only as the divisors of [`ROPE_FREQS`].
fn rope_scaling(file: &GgufFile, arch: &str, config: &LlamaConfig) -> Result<RopeScaling> {
    let bad = |reason: String| FrontendError::BadConfig { path: file.path().to_path_buf(), reason };
    let type_key = format!("{arch}.rope.scaling.type");
    let kind = if file.get(&type_key).is_some() { Some(file.get_str(&type_key)?) } else { None };
    let scaling = match kind {
        None | Some("none") => RopeScaling::None,
        Some("linear") => {
            let factor = file.get_f32(&format!("{arch}.rope.scaling.factor"))?;
            if !(factor.is_finite() && factor >= 1.0) {
                return Err(bad(format!("`{arch}.rope.scaling.factor` is {factor}: a linear scaling divides by a finite factor of at least 1")));
            }
            RopeScaling::Linear { factor }
        }
        Some(other) => {
            return Err(bad(format!("`{type_key}` is `{}`: prunec reads `none` and `linear` (and Llama 3.1's `{ROPE_FREQS}`)", crate::gguf::escaped(other))))
        }
    };
    if file.tensor_info(ROPE_FREQS).is_none() {
        return Ok(scaling);
    }
    if scaling != RopeScaling::None {
        return Err(bad(format!("the file has both `{type_key}` and `{ROPE_FREQS}`")));
    }
    let divisors = file.dequantize(ROPE_FREQS)?;
    let original = file
        .get(&format!("{arch}.rope.scaling.original_context_length"))
        .map(|_| file.get_usize(&format!("{arch}.rope.scaling.original_context_length")))
        .transpose()?;
    llama3_from_divisors(&divisors, config.rope_theta, config.head_dim, original.unwrap_or(8192))
        .map_err(|reason| FrontendError::BadTensor { path: file.path().to_path_buf(), tensor: ROPE_FREQS.into(), reason })
}

/// Llama 3.1's rotary scaling (`llama3`) whose divisors of the frequencies `theta^(-2i/d)` are
/// `divisors`, as llama.cpp's converter computes them from `factor`, `low_freq_factor`,
/// `high_freq_factor` and `original_max_position_embeddings`. Those four are not all
/// determined by the divisors (several give the same), so `original` is taken as given and the
/// others solved for: the largest divisor is `factor`, and a pair whose divisor lies between 1
/// and `factor` fixes `smooth = (original / wavelength − low) / (high − low)` on a line in
/// 1/wavelength. The result is checked: its divisors must be `divisors` (relative 1e-5), or the
/// tensor is not Llama 3.1's scaling and is refused.
pub fn llama3_from_divisors(divisors: &[f32], theta: f32, head_dim: usize, original: usize) -> std::result::Result<RopeScaling, String> {
    let half = head_dim / 2;
    if divisors.len() != half {
        return Err(format!("holds {} divisors for {half} rotating pairs (head_dim {head_dim})", divisors.len()));
    }
    if let Some(d) = divisors.iter().find(|d| !(d.is_finite() && **d >= 1.0)) {
        return Err(format!("holds the divisor {d}: Llama 3.1's are finite and at least 1"));
    }
    let factor = divisors.iter().copied().fold(1.0f32, f32::max);
    if factor == 1.0 {
        return Ok(RopeScaling::None);
    }
    let f = f64::from(factor);
    let tol = 1e-5;
    // x: 1 / wavelength of each pair, decreasing with i
    let x: Vec<f64> = (0..half).map(|i| 1.0 / (2.0 * std::f64::consts::PI * f64::from(theta).powf((2 * i) as f64 / head_dim as f64))).collect();
    let kept = |d: f32| f64::from(d) <= 1.0 + tol;
    let divided = |d: f32| f64::from(d) >= f * (1.0 - tol);
    // smooth = a·x − b through the pairs between; 1 at or above the kept ones, 0 at or below the divided ones
    let smooth: Vec<(f64, f64)> =
        divisors.iter().zip(&x).filter(|(d, _)| !kept(**d) && !divided(**d)).map(|(d, &x)| (x, (1.0 / f64::from(*d) - 1.0 / f) / (1.0 - 1.0 / f))).collect();
    let lowest_kept = divisors.iter().zip(&x).filter(|(d, _)| kept(**d)).map(|(_, &x)| x).fold(f64::INFINITY, f64::min);
    let highest_divided = divisors.iter().zip(&x).filter(|(d, _)| divided(**d)).map(|(_, &x)| x).fold(0.0, f64::max);
    let (a, b) = match smooth.as_slice() {
        [] => {
            // no pair between: put the ramp between the last divided pair and the first kept one
            let (lo, hi) = (highest_divided, if lowest_kept.is_finite() { lowest_kept } else { 2.0 * highest_divided });
            let (x0, x1) = (lo + (hi - lo) / 3.0, lo + 2.0 * (hi - lo) / 3.0);
            let a = 1.0 / (x1 - x0);
            (a, a * x0)
        }
        [(x0, s0)] => {
            // one pair between: any slope steep enough to keep the others where they are
            let mut a: f64 = 1e-12;
            if lowest_kept.is_finite() {
                a = a.max((1.0 - s0) / (lowest_kept - x0));
            }
            if highest_divided > 0.0 {
                a = a.max(s0 / (x0 - highest_divided));
            }
            let a = 2.0 * a;
            (a, a * x0 - s0)
        }
        points => {
            // least squares
            let n = points.len() as f64;
            let (mx, ms) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
            let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
            let sxs: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - ms)).sum();
            let a = sxs / sxx;
            (a, a * mx - ms)
        }
    };
    let old = original as f64;
    // smooth = old / (wavelength · (high − low)) − low / (high − low)
    let (span, low) = (old / a, b * old / a);
    let scaling = RopeScaling::Llama3 {
        factor,
        low_freq_factor: low as f32,
        high_freq_factor: (low + span) as f32,
        original_max_positions: original,
    };
    if !(a.is_finite() && a > 0.0 && low > 0.0 && span > 0.0) {
        return Err(format!("holds divisors that are not Llama 3.1's rotary scaling (no ramp fits them: {divisors:?})"));
    }
    let rope = |scaling| Rope { theta, rotary_dims: head_dim, layout: RopeLayout::HalfSplit, half_freqs: false, scaling };
    let (plain, scaled) = (rope(RopeScaling::None).inv_freq(0), rope(scaling).inv_freq(0));
    for (i, ((p, s), d)) in plain.iter().zip(&scaled).zip(divisors).enumerate() {
        let want = f64::from(*p) / f64::from(*d);
        if (f64::from(*s) - want).abs() > 1e-5 * want {
            return Err(format!("holds divisors that are not Llama 3.1's rotary scaling (pair {i}: {d}, where the best fit gives {})", f64::from(*p) / f64::from(*s)));
        }
    }
    Ok(scaling)
}

/// The divisors llama.cpp's converter writes as [`ROPE_FREQS`] for a `llama3` scaling: one
/// per rotating pair, computed in f64 and stored in f32, as it does.
pub fn llama3_divisors(theta: f32, head_dim: usize, factor: f64, low: f64, high: f64, old: f64) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / f64::from(theta.powf((2 * i) as f32 / head_dim as f32));
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < old / high {
                1.0
            } else if wavelen > old / low {
                factor as f32
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
            }
        })
        .collect()
}

/// Reads GGUF file `file` (at `path`) of a LLaMA-like family laid out as `layout` says; the
/// model carries the configuration as the family's `config.json` (`write`). Refuses a file
/// holding a tensor the model does not read: its computation would be lost.
pub fn load(path: &Path, file: GgufFile, layout: GgufLayout, write: fn(&LlamaConfig) -> serde_json::Value) -> Result<Model> {
    let arch = file.get_str("general.architecture")?.to_string();
    // a pruned LLaMA-like model that prunec wrote with layers of their own widths
    let (layout, arch) = if arch == DECI { (GgufLayout { name: DECI, permuted: true }, llama::LLAMA.model_type.to_string()) } else { (layout, arch) };
    let config = config_from_metadata(&file)?;
    let mut info = crate::arch::gguf_model_info(path, &file, arch, config.num_layers)?;
    let mut read: Vec<String> =
        config.expected_params().into_iter().filter_map(|(hf, _)| gguf_name(&hf, &config, layout.permuted).map(|(n, _)| n)).collect();
    if config.rope_scaling != RopeScaling::None && file.tensor_info(ROPE_FREQS).is_some() {
        read.push(ROPE_FREQS.into());
    }
    crate::arch::gguf_all_read(&file, &read)?;
    info.config = Some(Config::shared(config.clone(), write(&config)));
    let c = config.clone();
    llama::build(&config, &GgufWeights { file, names: move |hf: &str| gguf_name(hf, &c, layout.permuted) }, info)
}

/// llama.cpp's LLaMA with layers of their own widths (NVIDIA's Deci/Nemotron models): the
/// `llama` layout, with `head_count`, `head_count_kv` and `feed_forward_length` per layer, and
/// a layer with no heads (no MLP channels) has no attention (MLP) branch.
pub const DECI: &str = "deci";

/// The key/value head each key/value head of a llama.cpp layer is (in order), when the layer's
/// query heads are not spread evenly over its key/value heads (llama.cpp's grouped-query
/// attention takes `head_count / head_count_kv` query heads per key/value head): each is
/// repeated `c / g` times for its `c` query heads, `g` the greatest common divisor of the `c`s.
fn even_kv_heads(copies: &[usize]) -> Option<Vec<usize>> {
    let first = *copies.first()?;
    if copies.iter().all(|&c| c == first) {
        return None;
    }
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let g = copies.iter().fold(0, |g, &c| gcd(g, c)).max(1);
    Some(copies.iter().enumerate().flat_map(|(i, &c)| std::iter::repeat_n(i, c / g)).collect())
}

/// One metadata value per layer, as llama.cpp reads them: one integer when all are the same,
/// else an array (of `i32`s, as gguf-py writes them).
fn per_layer_value(values: &[usize]) -> GgufValue {
    match values.first() {
        Some(&v) if values.iter().all(|&x| x == v) => GgufValue::U32(v as u32),
        _ => GgufValue::Array(values.iter().map(|&v| GgufValue::I32(v as i32)).collect()),
    }
}

/// The GGUF file llama.cpp runs for a LLaMA-like `model` of `family` (laid out as `layout`):
/// its widths as they are now, read from the parameters. Layers of different widths make it a
/// [`DECI`] file (llama.cpp's LLaMA reads one width for all layers), with q/k rows in the
/// interleaved rotary layout; a layer whose query heads are spread unevenly over its key/value
/// heads has those repeated ([`even_kv_heads`]). Qwen2 with pruned heads is a [`DECI`] file
/// too (llama.cpp's `qwen2` takes q and o as wide as the hidden state). MLP channels are
/// padded with zero channels to whole blocks of `block` (exact: they add nothing), so a
/// quantized type fits their rows; a layer whose MLP pruning emptied keeps `block` zero
/// channels (llama.cpp's `deci` would drop the layer's attention with its MLP). Refused,
/// naming why: layers of different widths for a family [`DECI`] cannot hold (per-head q/k
/// norms), a first layer without attention (llama.cpp takes the head width from it), a sliding
/// window outside the `llama` layout, and the rotary scalings llama.cpp reads differently
/// (`dynamic`, `yarn`). Mistral's window is left out as llama.cpp's converter leaves it (the
/// file is the model for sequences up to the window; the plan's note says so).
pub fn plan(model: &Model, family: &Family, layout: GgufLayout, block: usize) -> Result<GgufPlan> {
    let path = llama::config_path(model);
    let json = llama::hf_config_of(model, family)?;
    let config = (family.read)(&path, &json)?;
    let bad = |reason: String| FrontendError::BadConfig { path: path.clone(), reason: format!("writing GGUF: {reason}") };
    let n = config.num_layers;
    let widths: Vec<llama::LayerWidths> = (0..n).map(|l| config.layer(l)).collect();
    let uniform = widths.windows(2).all(|w| w[0] == w[1]);
    let narrow_qwen2 = layout.name == "qwen2" && widths.iter().any(|w| w.num_heads * config.head_dim != config.hidden_size);
    let (arch, permuted) = if uniform && !narrow_qwen2 { (layout.name, layout.permuted) } else { (DECI, true) };
    if !uniform && config.variant.qk_norm {
        return Err(bad(format!("its layers have widths of their own, which llama.cpp reads only for LLaMA's layout ({DECI}), without {}'s per-head q/k norms", layout.name)));
    }
    if widths.first().is_some_and(|w| !w.has_attention()) {
        return Err(bad("its first layer has no attention heads, and llama.cpp takes the width of every head from the first layer".into()));
    }
    // llama.cpp's `llama` and `deci` attend to every earlier position, and its converter writes
    // Mistral's files without the window: the same model for sequences up to the window
    let mut notes = Vec::new();
    if let Some(w) = config.variant.sliding_window {
        if layout.name != "llama" {
            return Err(bad(format!("llama.cpp's {} has no sliding window (this model's is {w} positions)", layout.name)));
        }
        notes.push(format!(
            "gguf: llama.cpp's {arch} attends to every earlier position, where this model attends to the last {w}: the file computes the model for sequences of up to {w} tokens (llama.cpp's own converter writes Mistral so)"
        ));
    }
    let kv_heads: Vec<Option<Vec<usize>>> = widths.iter().map(|w| even_kv_heads(&w.kv_copies())).collect();
    let hd = config.head_dim;
    // MLP channels as written: whole blocks, and never none (see above)
    let block = block.max(1);
    let ff: Vec<usize> = widths.iter().map(|w| w.intermediate_size.next_multiple_of(block).max(block)).collect();
    let key = |k: &str| format!("{arch}.{k}");
    let mut metadata = vec![
        (key("block_count"), GgufValue::U32(n as u32)),
        (key("context_length"), GgufValue::U32(config.max_position_embeddings as u32)),
        (key("embedding_length"), GgufValue::U32(config.hidden_size as u32)),
        (key("vocab_size"), GgufValue::U32(config.vocab_size as u32)),
        (key("attention.layer_norm_rms_epsilon"), GgufValue::F32(config.rms_norm_eps)),
        (key("attention.key_length"), GgufValue::U32(hd as u32)),
        (key("attention.value_length"), GgufValue::U32(hd as u32)),
        (key("rope.dimension_count"), GgufValue::U32(hd as u32)),
        (key("rope.freq_base"), GgufValue::F32(config.rope_theta)),
        (key("attention.head_count"), per_layer_value(&widths.iter().map(|w| w.num_heads).collect::<Vec<_>>())),
        (
            key("attention.head_count_kv"),
            per_layer_value(&widths.iter().zip(&kv_heads).map(|(w, e)| e.as_ref().map_or(w.num_kv_heads, Vec::len)).collect::<Vec<_>>()),
        ),
        (key("feed_forward_length"), per_layer_value(&ff)),
    ];
    let mut tensors = Vec::new();
    match config.rope_scaling {
        RopeScaling::None => {}
        RopeScaling::Linear { factor } => {
            metadata.push((key("rope.scaling.type"), GgufValue::String("linear".into())));
            metadata.push((key("rope.scaling.factor"), GgufValue::F32(factor)));
        }
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_positions } => {
            let values = llama3_divisors(config.rope_theta, hd, f64::from(factor), f64::from(low_freq_factor), f64::from(high_freq_factor), original_max_positions as f64);
            tensors.push(PlannedTensor { name: ROPE_FREQS.into(), data: Planned::Values { shape: vec![values.len()], values } });
            metadata.push((key("rope.scaling.original_context_length"), GgufValue::U32(original_max_positions as u32)));
        }
        other => return Err(bad(format!("its rotary scaling {other:?} is not one prunec writes for llama.cpp (linear and Llama 3.1's are)"))),
    }
    // the file's tensors: q/k rows in llama.cpp's rotary layout where it wants them, key/value heads evened out
    for (hf, shape) in config.expected_params() {
        let (name, _) = gguf_name(&hf, &config, false).ok_or_else(|| bad(format!("llama.cpp has no name for `{hf}`")))?;
        let layer = hf.strip_prefix("model.layers.").and_then(|r| r.split_once('.')).and_then(|(l, _)| l.parse::<usize>().ok());
        let module = hf.rsplit('.').nth(1).unwrap_or("");
        let rows_of = shape.first().copied().unwrap_or(0);
        let mut rows: Option<Vec<usize>> = None;
        let mut cols: Option<Vec<Option<usize>>> = None;
        let mut heads = widths.get(layer.unwrap_or(0)).map_or(0, |w| w.num_heads);
        if let (Some(l), "k_proj" | "v_proj") = (layer, module) {
            if let Some(e) = &kv_heads[l] {
                rows = Some(e.iter().flat_map(|&h| h * hd..(h + 1) * hd).collect());
            }
            heads = kv_heads[l].as_ref().map_or(widths[l].num_kv_heads, Vec::len);
        }
        let rotated = permuted && layer.is_some() && matches!(module, "q_proj" | "k_proj") && shape.len() <= 2;
        if rotated {
            let base: Vec<usize> = rows.take().unwrap_or_else(|| (0..rows_of).collect());
            let total = base.len();
            if heads == 0 || !total.is_multiple_of(2 * heads) {
                return Err(bad(format!("`{hf}`: {total} rows are not {heads} heads of two halves")));
            }
            rows = Some((0..total).map(|r| base[crate::gguf::permuted_source_row(r, heads, total)]).collect());
        }
        let mut rows: Option<Vec<Option<usize>>> = rows.map(|r| r.into_iter().map(Some).collect());
        if let (Some(l), "gate_proj" | "up_proj" | "down_proj") = (layer, module) {
            let pad = ff[l] - widths[l].intermediate_size;
            if pad > 0 && module == "down_proj" && shape.len() == 2 {
                cols = Some((0..shape[1]).map(Some).chain(std::iter::repeat_n(None, pad)).collect());
            } else if pad > 0 && module != "down_proj" {
                rows = Some((0..rows_of).map(Some).chain(std::iter::repeat_n(None, pad)).collect());
            }
        }
        tensors.push(PlannedTensor { name, data: Planned::Param { hf, rows, cols } });
    }
    // layers whose MLP pruning emptied: a norm and channels of zeros
    let h = config.hidden_size;
    for l in (0..n).filter(|&l| !widths[l].has_mlp()) {
        let zeros = |shape: Vec<usize>| Planned::Values { values: vec![0.0; shape.iter().product()], shape };
        tensors.push(PlannedTensor { name: format!("blk.{l}.ffn_norm.weight"), data: Planned::Values { shape: vec![h], values: vec![1.0; h] } });
        tensors.push(PlannedTensor { name: format!("blk.{l}.ffn_gate.weight"), data: zeros(vec![ff[l], h]) });
        tensors.push(PlannedTensor { name: format!("blk.{l}.ffn_up.weight"), data: zeros(vec![ff[l], h]) });
        tensors.push(PlannedTensor { name: format!("blk.{l}.ffn_down.weight"), data: zeros(vec![h, ff[l]]) });
    }
    let stale = ["rope.scaling.type", "rope.scaling.factor", "rope.scaling.original_context_length", "attention.sliding_window"]
        .iter()
        .flat_map(|k| [format!("{}.{k}", layout.name), format!("{DECI}.{k}")])
        .collect();
    Ok(GgufPlan { arch: arch.into(), metadata, stale, vocab: config.vocab_size, tensors, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn divisors(theta: f32, head_dim: usize, factor: f64, low: f64, high: f64, old: f64) -> Vec<f32> {
        llama3_divisors(theta, head_dim, factor, low, high, old)
    }


    fn same_frequencies(a: RopeScaling, b: RopeScaling, theta: f32, head_dim: usize) {
        let rope = |scaling| Rope { theta, rotary_dims: head_dim, layout: RopeLayout::HalfSplit, half_freqs: false, scaling };
        for (x, y) in rope(a).inv_freq(0).iter().zip(rope(b).inv_freq(0)) {
            assert!((x - y).abs() <= 2e-6 * y, "{x} vs {y}");
        }
    }

    #[test]
    fn llama3_scaling_is_read_back_from_its_divisors() {
        // Llama 3.1 8B: theta 500000, heads of 128, factor 8, low 1, high 4, 8192 positions
        let real = RopeScaling::Llama3 { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_positions: 8192 };
        let d = divisors(500_000.0, 128, 8.0, 1.0, 4.0, 8192.0);
        assert!(d.iter().filter(|&&x| x > 1.0 && x < 8.0).count() >= 2, "pairs on the ramp");
        assert_eq!(llama3_from_divisors(&d, 500_000.0, 128, 8192).unwrap(), real);
        // another `original` gives other factors, the same frequencies
        let other = llama3_from_divisors(&d, 500_000.0, 128, 4096).unwrap();
        assert_ne!(other, real);
        same_frequencies(other, real, 500_000.0, 128);
        // no pair on the ramp, or one: still the same frequencies
        for (old, low, high) in [(8192.0, 1.0, 1.0001), (8.0, 1.0, 4.0)] {
            let d = divisors(10_000.0, 16, 8.0, low, high, old);
            let got = llama3_from_divisors(&d, 10_000.0, 16, 8192).unwrap();
            let want = RopeScaling::Llama3 { factor: 8.0, low_freq_factor: low as f32, high_freq_factor: high as f32, original_max_positions: old as usize };
            same_frequencies(got, want, 10_000.0, 16);
        }
        // all ones: no scaling
        assert_eq!(llama3_from_divisors(&[1.0; 8], 10_000.0, 16, 8192).unwrap(), RopeScaling::None);
    }

    /// A `block_count` beyond the tensors is refused before a width is read per layer (the
    /// widths of 2^40 layers would exhaust memory).
    #[test]
    fn a_block_count_beyond_the_tensors_is_refused() {
        use crate::gguf::write::{write_gguf, TensorOut};
        let path = std::env::temp_dir().join(format!("prunec-block-count-{}.gguf", std::process::id()));
        let meta = vec![
            ("general.architecture".to_string(), GgufValue::String("llama".into())),
            ("llama.block_count".to_string(), GgufValue::U64(1 << 40)),
            ("llama.embedding_length".to_string(), GgufValue::U32(8)),
            ("llama.attention.head_count".to_string(), GgufValue::U32(2)),
            ("llama.feed_forward_length".to_string(), GgufValue::U32(16)),
        ];
        let tensors = [TensorOut { name: "token_embd.weight".into(), dims: vec![8, 4], ty: crate::gguf::GgmlType::F32 }];
        write_gguf(&path, &[], true, &meta, &tensors, &mut |_| Ok(vec![0; 128])).unwrap();
        let err = config_from_metadata(&GgufFile::open(&path).unwrap()).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains("llama.block_count") && err.contains("holds only 1 tensors"), "{err}");
    }

    #[test]
    fn divisors_of_no_llama3_scaling_are_refused() {
        let mut d = divisors(500_000.0, 128, 8.0, 1.0, 4.0, 8192.0);
        d[40] = 2.0; // off the ramp
        assert!(llama3_from_divisors(&d, 500_000.0, 128, 8192).unwrap_err().contains("not Llama 3.1's rotary scaling"));
        assert!(llama3_from_divisors(&[1.0, 0.5], 10_000.0, 4, 8192).unwrap_err().contains("the divisor 0.5"));
        assert!(llama3_from_divisors(&[1.0; 3], 10_000.0, 16, 8192).unwrap_err().contains("3 divisors for 8 rotating pairs"));
        let mut d = divisors(500_000.0, 128, 8.0, 1.0, 4.0, 8192.0);
        d.reverse(); // high frequencies divided, low ones kept
        assert!(llama3_from_divisors(&d, 500_000.0, 128, 8192).is_err());
    }
}
