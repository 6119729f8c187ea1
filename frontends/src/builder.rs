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
