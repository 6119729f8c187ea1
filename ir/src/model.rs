//! A model: the graph, its parameters, where it came from, and the side tables passes
//! attach to it (dependency groups).

use std::any::Any;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::graph::Graph;
use crate::groups::Group;
use crate::params::ParamStore;

/// Facts about the model's source that writers and reports need.
#[derive(Debug, Clone, Default)]
pub struct ModelInfo {
    /// A short name (the folder or file name).
    pub name: String,
    /// The architecture (`llama`, `chatglm`...), as the frontend recognised it.
    pub architecture: String,
    /// The file or folder it was read from.
    pub source: PathBuf,
    /// The kind of file or folder it was read from.
    pub format: SourceFormat,
    /// The architecture's configuration as its frontend read and checked it (typed; the IR
    /// never reads it), when the model has one (an ONNX graph has none).
    pub config: Option<Arc<dyn ArchConfig>>,
    /// Where parameters came from in the source file, for writers that rewrite it (ONNX):
    /// every source tensor a parameter stands for, possibly transposed.
    pub origins: Vec<ParamOrigin>,
    /// Source values that IR values compute, for writers that must recompute shapes the
    /// source file states (ONNX reshape targets).
    pub source_values: Vec<SourceValue>,
    /// What the frontend noticed and the user should know, though the model was read (a
    /// tensor of the file that the configuration leaves unused, for instance).
    pub warnings: Vec<String>,
}

impl ModelInfo {
    /// The configuration as type `T`, when it is one.
    pub fn config_as<T: 'static>(&self) -> Option<&T> {
        self.config.as_deref()?.as_any().downcast_ref()
    }
}

/// An architecture's configuration, carried by the model for its frontend's writers: typed
/// by the frontend that read it, which downcasts it back ([`ModelInfo::config_as`]).
pub trait ArchConfig: fmt::Debug + Send + Sync + Any {
    /// The configuration as an HF `config.json` object (keys the architecture does not model
    /// kept as the source had them).
    fn to_json(&self) -> serde_json::Value;
    /// Itself, for [`ModelInfo::config_as`].
    fn as_any(&self) -> &dyn Any;
}

/// The kind of file or folder a model was read from, which decides how it is written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceFormat {
    /// Built in memory through the IR's API (no file).
    #[default]
    Memory,
    /// An HF folder: `config.json` and safetensors.
    Hf,
    /// A GGUF file.
    Gguf,
    /// An ONNX file (with its external data).
    Onnx,
}

impl SourceFormat {
    /// Its name in printed IR and reports: `memory`, `hf`, `gguf`, `onnx`.
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::Memory => "memory",
            SourceFormat::Hf => "hf",
            SourceFormat::Gguf => "gguf",
            SourceFormat::Onnx => "onnx",
        }
    }
}

impl std::fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A source tensor that a parameter stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamOrigin {
    /// The parameter.
    pub param: String,
    /// The tensor's name in the source file.
    pub tensor: String,
    /// Whether the tensor is the parameter transposed (ONNX `MatMul` weights are `[in, out]`).
    pub transposed: bool,
}

/// A source value and the IR value holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceValue {
    /// The value's name in the source file.
    pub name: String,
    /// The IR value.
    pub value: crate::graph::ValueId,
    /// The source value is the IR value with axes 1 and 2 swapped (`[b, h, s, d]` vs `[b, s, h, d]`).
    pub swap_1_2: bool,
}

/// A model in the IR.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// The computation.
    pub graph: Graph,
    /// The parameters, by name.
    pub params: ParamStore,
    /// Where it came from.
    pub info: ModelInfo,
    /// Dependency groups, once the `group` pass has run.
    pub groups: Option<Vec<Group>>,
}

impl Model {
    /// Gives the linear op `node` (`x · wᵀ`, without a bias) the bias `values`, a new
    /// parameter `name` stored as `dtype`.
    pub fn add_linear_bias(&mut self, node: crate::graph::NodeId, name: &str, values: Vec<f32>, dtype: crate::types::DType) -> crate::error::Result<()> {
        use crate::types::{DType, Shape, ValueType};
        let bad = |reason: String| crate::error::IrError::BadParam { name: name.to_string(), reason };
        let n = self.graph.node(node)?;
        if !matches!(n.op, crate::op::Op::Linear) || self.graph.inputs(node).len() != 2 {
            return Err(bad(format!("`{}` is not a linear op without a bias", n.name)));
        }
        if self.params.get(name).is_some() {
            return Err(bad("a parameter of that name exists".into()));
        }
        let block = n.block;
        let mut param = crate::params::Param::owned(vec![values.len()], values)?;
        param.dtype = dtype;
        let ty = ValueType::new(DType::F32, Shape::fixed(&param.shape));
        let v = self.graph.add_value(crate::op::Op::Param { name: name.to_string(), ty }, name, block, &[])?;
        self.graph.push_input(node, v)?;
        self.graph.reinfer(node)?;
        self.params.insert(name, param);
        Ok(())
    }
}
