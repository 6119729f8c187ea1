//! What every architecture's lowering shares: reading the parameters a configuration expects
//! (each checked against it), a small graph builder, and the verified model at the end.

use std::path::Path;

use prunec_ir::{DType, Dim, Graph, Model, ModelInfo, Op, Param, ParamData, ParamStore, Shape, ValueId, ValueType};

use crate::error::{FrontendError, Result};
use crate::weights::WeightSource;

/// Builds a graph over a parameter store, naming nodes after the source's modules.
pub(crate) struct Builder<'a> {
    /// The graph so far.
    pub g: Graph,
    params: &'a ParamStore,
}

impl<'a> Builder<'a> {
    /// An empty graph over `params`.
    pub fn new(params: &'a ParamStore) -> Builder<'a> {
        Builder { g: Graph::new(), params }
    }

    /// The `input_ids` input, `[batch, seq]` token ids.
    pub fn token_ids(&mut self) -> prunec_ir::Result<ValueId> {
        let ty = ValueType::new(DType::I64, Shape(vec![Dim::batch(), Dim::seq()]));
        self.op(Op::Input { name: "input_ids".into(), ty }, "input_ids", None, &[])
    }

    /// Parameter `name` of the store.
    pub fn param(&mut self, name: &str, block: Option<u32>) -> prunec_ir::Result<ValueId> {
        let p = self.params.get(name).ok_or_else(|| prunec_ir::IrError::BadParam {
            name: name.to_string(),
            reason: "not in the store".into(),
        })?;
        let ty = ValueType::new(p.dtype, Shape::fixed(&p.shape));
        self.g.add_value(Op::Param { name: name.to_string(), ty }, name, block, &[])
    }

    /// `module` (`{module}.weight`, and `{module}.bias` when `bias`) applied to `x`.
    pub fn linear(&mut self, x: ValueId, module: &str, bias: bool, block: Option<u32>) -> prunec_ir::Result<ValueId> {
        let w = self.param(&format!("{module}.weight"), block)?;
        let mut inputs = vec![x, w];
        if bias {
            inputs.push(self.param(&format!("{module}.bias"), block)?);
        }
        self.g.add_value(Op::Linear, module, block, &inputs)
    }

    /// Any op.
    pub fn op(&mut self, op: Op, name: &str, block: Option<u32>, inputs: &[ValueId]) -> prunec_ir::Result<ValueId> {
        self.g.add_value(op, name, block, inputs)
    }
}

/// The parameters `expected` lists (name, shape), read lazily from `weights`; a missing tensor
/// or a shape that disagrees with the configuration is an error naming the file and tensor.
pub(crate) fn read_params(expected: Vec<(String, Vec<usize>)>, weights: &dyn WeightSource) -> Result<ParamStore> {
    let mut params = ParamStore::new();
    for (name, shape) in expected {
        let t = weights
            .tensor(&name)?
            .ok_or_else(|| FrontendError::MissingTensor { path: weights.location().to_path_buf(), tensor: name.clone() })?;
        if t.shape != shape {
            return Err(FrontendError::ShapeMismatch { path: t.file, tensor: name, expected: shape, found: t.shape });
        }
        params.insert(name, Param { shape, dtype: t.dtype, data: ParamData::Source(t.source) });
    }
    Ok(params)
}

/// The model of `graph` (lowered by `lower` over `params`), verified.
pub(crate) fn finish(
    params: ParamStore,
    info: ModelInfo,
    lower: impl FnOnce(&ParamStore) -> prunec_ir::Result<Graph>,
) -> Result<Model> {
    let path = info.source.clone();
    let graph = lower(&params).map_err(|source| FrontendError::Ir { path: path.clone(), source })?;
    let model = Model { graph, params, info, groups: None };
    prunec_ir::verify(&model).map_err(|source| FrontendError::Ir { path, source })?;
    Ok(model)
}

/// Checks that a configuration about to be written describes `params` exactly: every tensor
/// it implies (`expected`) exists with its shape.
pub(crate) fn check_params(expected: Vec<(String, Vec<usize>)>, params: &ParamStore, source: &Path) -> Result<()> {
    for (name, expected) in expected {
        match params.get(&name) {
            None => return Err(FrontendError::MissingTensor { path: source.to_path_buf(), tensor: name }),
            Some(p) if p.shape != expected => {
                return Err(FrontendError::ShapeMismatch { path: source.to_path_buf(), tensor: name, expected, found: p.shape.clone() })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Checks that each of a configuration's `sizes` (key, value) is positive and plausible (at
/// most 2^24), naming the key and `path` otherwise.
pub(crate) fn check_sizes(path: &Path, sizes: &[(&str, usize)]) -> Result<()> {
    for &(k, v) in sizes {
        let reason = if v == 0 {
            format!("`{k}` must be positive")
        } else if v > 1 << 24 {
            format!("`{k}` = {v} is implausibly large")
        } else {
            continue;
        };
        return Err(FrontendError::BadConfig { path: path.to_path_buf(), reason });
    }
    Ok(())
}

/// The config key of per-layer widths, written when pruning left layers of different widths
/// (one object per layer, with the architecture's own width keys).
pub const LAYER_WIDTHS_KEY: &str = "prunec_layer_widths";

/// Reads `prunec_layer_widths` from `json`: `None` when absent, else one entry per layer, each
/// holding every one of `keys` as a positive integer.
pub(crate) fn read_layer_widths<const N: usize>(
    path: &Path,
    json: &serde_json::Value,
    keys: [&str; N],
    num_layers: usize,
) -> Result<Option<Vec<[usize; N]>>> {
    let bad = |reason: String| FrontendError::BadConfig { path: path.to_path_buf(), reason };
    let entries = match json.get(LAYER_WIDTHS_KEY) {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Array(entries)) => entries,
        Some(_) => return Err(bad(format!("`{LAYER_WIDTHS_KEY}` is not a list (one entry per layer)"))),
    };
    if entries.len() != num_layers {
        return Err(bad(format!("`{LAYER_WIDTHS_KEY}` has {} entries for {num_layers} layers", entries.len())));
    }
    let mut layers = Vec::with_capacity(entries.len());
    for (l, entry) in entries.iter().enumerate() {
        let mut widths = [0; N];
        for (w, key) in widths.iter_mut().zip(keys) {
            *w = get_usize(entry, key)
                .filter(|&v| v > 0 && v <= 1 << 24)
                .ok_or_else(|| bad(format!("`{LAYER_WIDTHS_KEY}[{l}]`: `{key}` is missing or not a positive integer")))?;
        }
        layers.push(widths);
    }
    Ok(Some(layers))
}

/// Writes `layers` into `obj`: the top-level `keys` hold the widest layer's widths; when the
/// layers differ, `prunec_layer_widths` lists each layer's, else it is removed.
pub(crate) fn write_layer_widths<const N: usize>(
    obj: &mut serde_json::Map<String, serde_json::Value>,
    keys: [&str; N],
    layers: &[[usize; N]],
) {
    let mut top = [0; N];
    for layer in layers {
        for (t, &w) in top.iter_mut().zip(layer) {
            *t = (*t).max(w);
        }
    }
    for (key, w) in keys.iter().zip(top) {
        obj.insert((*key).into(), w.into());
    }
    if layers.iter().all(|l| *l == top) {
        obj.remove(LAYER_WIDTHS_KEY);
    } else {
        let entries = layers.iter().map(|l| keys.iter().zip(l).map(|(k, &w)| ((*k).to_string(), w.into())).collect());
        obj.insert(LAYER_WIDTHS_KEY.into(), serde_json::Value::Array(entries.map(serde_json::Value::Object).collect()));
    }
}

/// What a configuration value is when it is not what a key needs, for messages.
fn describe(v: &serde_json::Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

/// The non-negative integer at `key` of a configuration, if it is one that fits a `usize`: `None`
/// when absent, null or of another type (for keys whose absence the caller reports or defaults).
pub(crate) fn get_usize(json: &serde_json::Value, key: &str) -> Option<usize> {
    json.get(key).and_then(serde_json::Value::as_u64).and_then(|v| usize::try_from(v).ok())
}

/// The non-negative integer at `key` of a configuration, which must be there: an error naming the
/// key when it is absent or anything else.
pub(crate) fn need_usize(path: &Path, json: &serde_json::Value, key: &str) -> Result<usize> {
    get_usize(json, key).ok_or_else(|| FrontendError::BadConfig {
        path: path.to_path_buf(),
        reason: format!("`{key}` is missing or not a non-negative integer"),
    })
}

/// The number at `key` of a configuration: `None` when absent or null, an error naming the key
/// when it is anything but a number (`"rms_norm_eps": "x"` is never silently a default).
pub(crate) fn opt_f64(path: &Path, json: &serde_json::Value, key: &str) -> Result<Option<f64>> {
    match json.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| FrontendError::BadConfig {
            path: path.to_path_buf(),
            reason: format!("`{key}` must be a number, not {}", describe(v)),
        }),
    }
}

/// The non-negative integer at `key`: `None` when absent or null, an error naming the key for
/// anything else.
pub(crate) fn opt_usize(path: &Path, json: &serde_json::Value, key: &str) -> Result<Option<usize>> {
    match json.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v.as_u64().and_then(|n| usize::try_from(n).ok()).map(Some).ok_or_else(|| FrontendError::BadConfig {
            path: path.to_path_buf(),
            reason: format!("`{key}` must be a non-negative integer, not {}", describe(v)),
        }),
    }
}

/// The boolean at `key`: `None` when absent or null, an error naming the key for anything else.
pub(crate) fn opt_bool(path: &Path, json: &serde_json::Value, key: &str) -> Result<Option<bool>> {
    match json.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| FrontendError::BadConfig {
            path: path.to_path_buf(),
            reason: format!("`{key}` must be true or false, not {}", describe(v)),
        }),
    }
}

/// The string at `key`: `None` when absent or null, an error naming the key for anything else.
pub(crate) fn opt_str<'a>(path: &Path, json: &'a serde_json::Value, key: &str) -> Result<Option<&'a str>> {
    match json.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or_else(|| FrontendError::BadConfig {
            path: path.to_path_buf(),
            reason: format!("`{key}` must be a string, not {}", describe(v)),
        }),
    }
}

/// Checks that `value` (configuration key `key`, as the computation reads it) is a finite,
/// positive number: an epsilon of 0 or less, or a rotary base of 0, gives NaN everywhere.
pub(crate) fn check_positive(path: &Path, key: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        return Ok(());
    }
    Err(FrontendError::BadConfig { path: path.to_path_buf(), reason: format!("`{key}` = {value} must be a positive number") })
}

/// Tensors that checkpoints store beside the parameters and that no computation reads
/// (rotary tables, attention-mask buffers).
fn is_buffer(name: &str) -> bool {
    [".inv_freq", ".cos_cached", ".sin_cached", ".masked_bias", ".attn.bias"].iter().any(|s| name.ends_with(s))
}

/// How a file's tensors are laid out by layer, for [`check_unused`].
pub(crate) struct LayerNames<'a> {
    /// Prefix of a layer's tensors, before the layer's number (`model.layers.`).
    pub prefix: &'a str,
    /// The configuration key holding the number of layers (`num_hidden_layers`).
    pub key: &'a str,
    /// The number of layers the configuration gives.
    pub count: usize,
}

/// Checks a file's tensors (`names`) against what a configuration describes, before lowering:
/// no more layers than tensors ([`check_layer_count`], before `expected` lists them) and no
/// tensor left out ([`check_unused`]). Returns the warnings.
pub(crate) fn check_weights(
    path: &Path,
    names: &[&String],
    layers: LayerNames<'_>,
    expected: impl FnOnce() -> Vec<(String, Vec<usize>)>,
    tied_head: Option<(&str, &str)>,
) -> Result<Vec<String>> {
    check_layer_count(path, layers.key, layers.count, names.len())?;
    check_unused(path, names.iter().copied(), &expected(), layers, tied_head)
}

/// Checks that the weights file holds no tensor that the configuration leaves out, so that no
/// weight is dropped silently: tensors of layers past `layers.count` are refused, as are tensors
/// no parameter uses (a bias with `attention_bias: false`...), except known buffers and
/// `tied_head` — a separate LM head in a file whose configuration ties it to the embedding —
/// which is a warning (the embedding serves as the head, as transformers does). Returns the
/// warnings.
pub(crate) fn check_unused<'n>(
    path: &Path,
    names: impl Iterator<Item = &'n String>,
    expected: &[(String, Vec<usize>)],
    layers: LayerNames<'_>,
    tied_head: Option<(&str, &str)>,
) -> Result<Vec<String>> {
    let wanted: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let mut warnings = Vec::new();
    let mut unused: Vec<&str> = Vec::new();
    let mut beyond: Option<(usize, &str)> = None;
    for name in names {
        if wanted.contains(name.as_str()) || is_buffer(name) {
            continue;
        }
        if let Some((head, key)) = tied_head {
            if name == head {
                warnings.push(format!(
                    "{}: `{key}` is true, so the embedding serves as the LM head and the file's `{head}` is not used (as transformers does); set `{key}: false` to use it",
                    path.display()
                ));
                continue;
            }
        }
        let layer = name.strip_prefix(layers.prefix).and_then(|r| r.split('.').next()).and_then(|l| l.parse::<usize>().ok());
        match layer {
            Some(l) if l >= layers.count => {
                if beyond.is_none_or(|(m, _)| l > m) {
                    beyond = Some((l, name));
                }
            }
            _ => unused.push(name),
        }
    }
    let bad = |reason: String| FrontendError::BadConfig { path: path.to_path_buf(), reason };
    if let Some((last, example)) = beyond {
        return Err(bad(format!(
            "the weights hold layers up to {last} (`{}`), but `{}` is {}: their weights would be dropped; the configuration does not describe this file",
            example.escape_debug(),
            layers.key,
            layers.count
        )));
    }
    if !unused.is_empty() {
        unused.sort_unstable();
        let shown: Vec<String> = unused.iter().take(5).map(|n| format!("`{}`", n.escape_debug())).collect();
        let more = if unused.len() > 5 { format!(" and {} more", unused.len() - 5) } else { String::new() };
        return Err(bad(format!(
            "the weights hold {} tensor{} that the configuration does not use ({}{more}): they would be dropped; the configuration does not describe this file",
            unused.len(),
            if unused.len() == 1 { "" } else { "s" },
            shown.join(", ")
        )));
    }
    Ok(warnings)
}

/// `v` as the f64 of its shortest decimal form (`1e-5`, not `9.999999747378752e-6`).
pub(crate) fn shortest_f64(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

/// The epsilon of the model's RMSNorms as the graph has it now (pruning hidden channels
/// rescales it, see the `prune` pass); `None` without norms; an error when they differ, which
/// one `rms_norm_eps` cannot say.
pub(crate) fn norm_eps(model: &Model) -> std::result::Result<Option<f32>, String> {
    norm_eps_where(model, |_| true)
}

/// [`norm_eps`] over the RMSNorms whose node name `counts` (Qwen3's per-head norms of q and k
/// keep their epsilon when hidden channels go).
pub(crate) fn norm_eps_where(model: &Model, counts: impl Fn(&str) -> bool) -> std::result::Result<Option<f32>, String> {
    let g = &model.graph;
    let mut eps = None;
    for id in g.node_ids() {
        let Some(node) = g.node(id).ok().filter(|n| counts(&n.name)) else { continue };
        if let Op::RmsNorm { eps: e, .. } = &node.op {
            match eps {
                None => eps = Some(*e),
                Some(first) if first != *e => {
                    return Err(format!("the RMSNorms have different epsilons ({first:e}, {e:e}): one rms_norm_eps cannot hold them"))
                }
                Some(_) => {}
            }
        }
    }
    Ok(eps)
}

/// Refuses a configuration with more layers than the weights have tensors (every layer has at
/// least one): its list of expected tensors alone could exhaust memory.
fn check_layer_count(config_path: &Path, key: &str, layers: usize, tensors: usize) -> Result<()> {
    if layers > tensors {
        return Err(FrontendError::BadConfig {
            path: config_path.to_path_buf(),
            reason: format!("`{key}` is {layers}, but the weights hold only {tensors} tensors"),
        });
    }
    Ok(())
}
