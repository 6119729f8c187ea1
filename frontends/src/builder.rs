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

/// The configuration `model` was read with (its `config.json` as JSON); `path` names it in
/// errors.
pub(crate) fn model_config(model: &Model, path: &Path) -> Result<serde_json::Value> {
    let text = model.info.config_json.as_deref().ok_or_else(|| FrontendError::BadConfig {
        path: path.to_path_buf(),
        reason: "the model carries no configuration".into(),
    })?;
    serde_json::from_str(text).map_err(|e| FrontendError::Corrupt { path: path.to_path_buf(), format: "config.json", reason: e.to_string() })
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
            *w = entry
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .and_then(|v| usize::try_from(v).ok())
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
