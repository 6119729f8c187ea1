//! A model: the graph, its parameters, where it came from, and the side tables passes
//! attach to it (dependency groups).

use std::path::PathBuf;

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
    /// The source format (`hf`, `gguf`, `onnx`).
    pub format: String,
    /// The source's configuration, as JSON text, when it has one.
    pub config_json: Option<String>,
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
