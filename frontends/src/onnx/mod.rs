//! ONNX files: decoding (memory-mapped, weights not copied), tensor data in every storage
//! form ONNX allows, lookups an importer needs, and encoding for the writer.
//!
//! [`OnnxFile::open`] maps the file and decodes the [`proto::ModelProto`] from the mapping:
//! initializers stored raw keep pointing into the mapped file. Tensors are read through
//! [`OnnxFile::tensor_f32`], [`OnnxFile::tensor_i64`] and [`OnnxFile::tensor_raw`], which
//! handle `raw_data`, the typed fields and external data files alike. [`write_model`]
//! encodes a model back, moving large initializers to an external data file when asked
//! (or when the model would pass protobuf's 2 GiB limit).
//!
//! [`load`] raises a file to the IR in three steps: [`fold`] evaluates the shape arithmetic
//! and builds an e-graph of the rest, [`rules`] raise exporter patterns in it, `lower`
//! extracts the cheapest term and emits IR ops. The modules use each other without a cycle
//! (each uses only those listed after it, and [`OnnxFile`] from here):
//!
//! ```text
//! language  the e-graph's terms, and the analysis giving each class its facts
//! symbolic  arithmetic on symbolic sizes
//! probe     values computed from the sizes alone, at probe sizes   → language, symbolic, tensor
//! rules     the raising rules                                      → language, probe
//! fold      ONNX graph → e-graph                                   → language, symbolic, probe, check, quant, tensor
//! lower     e-graph → IR                                           → language, fold (its result), quant, tensor
//! emit      pruned IR → ONNX file                                  → fold (repairs), write
//! ```
//!
//! To teach the importer a new exporter pattern, write a rule in [`rules`]: a pattern over
//! [`language::Term`]s and a function that reads the matched classes' facts (constants,
//! weights, shapes) and builds the raised term, with a test beside it that checks the
//! attributes it raises (θ, widths, scale); a value computed from the sizes alone is recognised
//! by evaluating it ([`probe`]). A new ONNX op is folded in [`fold`] (and listed in
//! [`fold::SUPPORTED_OPS`]); a new raised op is a `Term` variant that `lower` emits.

pub mod check;
mod emit;
pub mod fold;
pub mod language;
mod lower;
pub mod probe;
pub mod proto;
pub mod quant;
pub mod rules;
pub mod symbolic;
mod tensor;
mod write;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use bytes::Bytes;
use memmap2::Mmap;
use prost::Message;
use prunec_ir::Dim;

use crate::error::{FrontendError, Result};
use proto::attribute_proto::AttributeType;
use proto::tensor_proto::DataType;
use proto::type_proto;
use proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};

pub use emit::{source_files, write_pruned, write_pruned_to};
pub use tensor::{raw_len, type_name, RawTensor};
pub use write::{write_model, write_model_to, Destination, WrittenModel, EXTERNAL_ALIGNMENT, EXTERNAL_THRESHOLD, PROTOBUF_LIMIT};

/// Reads an ONNX model as exporters write it and raises it to the IR: shape arithmetic
/// folded ([`fold`]), exporter patterns recognised by egg rules ([`rules`]), the cheapest
/// term lowered to IR ops.
pub fn load(path: &Path) -> Result<prunec_ir::Model> {
    lower_file(OnnxFile::open(path)?)
}

/// [`load`] of a file's bytes already in memory (`path` names it in messages and is where
/// external data files are looked for).
pub fn load_bytes(path: &Path, bytes: Bytes) -> Result<prunec_ir::Model> {
    lower_file(OnnxFile::decode(path, bytes)?)
}

fn lower_file(file: OnnxFile) -> Result<prunec_ir::Model> {
    let path = file.path().to_path_buf();
    let path = path.as_path();
    let mut folded = fold::fold(&file)?;
    rules::raise(&mut folded.egraph).map_err(|reason| FrontendError::Corrupt { path: path.to_path_buf(), format: FORMAT, reason })?;
    lower::lower(&file, &folded, path)
}

/// A float tensor's shape (outermost first) and its values, borrowed where they can be.
pub type TensorF32<'a> = (Vec<usize>, Cow<'a, [f32]>);

/// The name `FrontendError::Corrupt` gives the format.
const FORMAT: &str = "ONNX";

/// The declared type of a graph value (a graph input, output or `value_info` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueType {
    /// The element type, as ONNX numbers it (see [`ValueType::data_type`]).
    pub elem_type: i32,
    /// The shape; `None` when the rank is unknown. Each axis is a size (`dim_value`) or a
    /// symbol (`dim_param`, such as `batch` or `sequence`); `None` when the file gives neither
    /// (or a negative size).
    pub shape: Option<Vec<Option<Dim>>>,
}

impl ValueType {
    /// The element type, if it is one ONNX defines.
    pub fn data_type(&self) -> Option<DataType> {
        DataType::try_from(self.elem_type).ok()
    }
}

/// The value a `Constant` node produces, as the node holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConstantValue<'a> {
    /// `value`: a tensor.
    Tensor(&'a TensorProto),
    /// `value_float`: a float scalar.
    Float(f32),
    /// `value_floats`: a 1-D float tensor.
    Floats(&'a [f32]),
    /// `value_int`: an int64 scalar.
    Int(i64),
    /// `value_ints`: a 1-D int64 tensor.
    Ints(&'a [i64]),
    /// `value_string`: a string scalar (UTF-8 bytes).
    String(&'a [u8]),
    /// `value_strings`: a 1-D string tensor.
    Strings(&'a [Bytes]),
    /// `sparse_value`: a sparse tensor (see [`OnnxFile::sparse_f32`], [`OnnxFile::sparse_i64`]).
    Sparse(&'a proto::SparseTensorProto),
}

/// A decoded ONNX model and the file it came from.
///
/// The lookups by name ([`OnnxFile::initializer`], [`OnnxFile::constant`],
/// [`OnnxFile::value_type`]) use tables built when the file is opened; after changing
/// [`OnnxFile::model`], call [`OnnxFile::reindex`].
pub struct OnnxFile {
    /// The decoded model. Raw tensor data points into the mapped file.
    pub model: ModelProto,
    path: PathBuf,
    dir: PathBuf,
    initializers: HashMap<String, usize>,
    constants: HashMap<String, usize>,
    value_types: HashMap<String, ValueType>,
    /// External data files mapped so far, by path.
    external: Mutex<HashMap<PathBuf, Bytes>>,
}

impl fmt::Debug for OnnxFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let graph = self.graph();
        f.debug_struct("OnnxFile")
            .field("path", &self.path)
            .field("ir_version", &self.model.ir_version)
            .field("opset", &self.opset())
            .field("nodes", &graph.node.len())
            .field("initializers", &graph.initializer.len())
            .finish_non_exhaustive()
    }
}

static EMPTY_GRAPH: LazyLock<GraphProto> = LazyLock::new(GraphProto::default);

impl OnnxFile {
    /// Maps the file at `path` and decodes its model. The weights are not copied: raw tensor
    /// data points into the mapping.
    pub fn open(path: &Path) -> Result<OnnxFile> {
        let bytes = map_file(path)?;
        OnnxFile::decode(path, bytes)
    }

    /// Decodes a model held in memory; `path` names it in messages, and its folder is where
    /// external data files are looked for.
    pub fn decode(path: &Path, bytes: Bytes) -> Result<OnnxFile> {
        let corrupt = |reason: String| FrontendError::Corrupt { path: path.to_path_buf(), format: FORMAT, reason };
        let model = ModelProto::decode(bytes).map_err(|e| corrupt(format!("not an ONNX protobuf message ({e})")))?;
        if model.graph.is_none() {
            return Err(corrupt("the model has no graph".into()));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut file = OnnxFile {
            model,
            path: path.to_path_buf(),
            dir,
            initializers: HashMap::new(),
            constants: HashMap::new(),
            value_types: HashMap::new(),
            external: Mutex::new(HashMap::new()),
        };
        file.reindex();
        Ok(file)
    }

    /// Rebuilds the lookup tables after [`OnnxFile::model`] was changed.
    pub fn reindex(&mut self) {
        let graph = self.model.graph.as_ref().unwrap_or(&*EMPTY_GRAPH);
        self.initializers = graph.initializer.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        self.constants = graph
            .node
            .iter()
            .enumerate()
            .filter(|(_, n)| is_default_domain(&n.domain) && n.op_type == "Constant")
            .flat_map(|(i, n)| n.output.iter().map(move |o| (o.clone(), i)))
            .collect();
        self.value_types = graph
            .input
            .iter()
            .chain(&graph.output)
            .chain(&graph.value_info)
            .filter_map(|v| Some((v.name.clone(), value_type(v.r#type.as_ref()?)?)))
            .collect();
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder holding the file, where external data files are looked for.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The main graph (checked present when the file was opened).
    pub fn graph(&self) -> &GraphProto {
        self.model.graph.as_ref().unwrap_or(&*EMPTY_GRAPH)
    }

    /// The opset version the model imports for the default domain (`""` / `ai.onnx`).
    pub fn opset(&self) -> Option<i64> {
        self.model.opset_import.iter().find(|o| is_default_domain(&o.domain)).map(|o| o.version)
    }

    /// The opset version the model imports for `domain`.
    pub fn opset_of(&self, domain: &str) -> Option<i64> {
        if is_default_domain(domain) {
            return self.opset();
        }
        self.model.opset_import.iter().find(|o| o.domain == domain).map(|o| o.version)
    }

    /// The initializer called `name`.
    pub fn initializer(&self, name: &str) -> Option<&TensorProto> {
        let inits = &self.graph().initializer;
        match self.initializers.get(name).and_then(|&i| inits.get(i)) {
            Some(t) if t.name == name => Some(t),
            _ => inits.iter().find(|t| t.name == name),
        }
    }

    /// The `Constant` node (default domain) that produces `name`.
    pub fn constant_node(&self, name: &str) -> Option<&NodeProto> {
        let nodes = &self.graph().node;
        let is_it = |n: &NodeProto| {
            n.op_type == "Constant" && is_default_domain(&n.domain) && n.output.iter().any(|o| o == name)
        };
        match self.constants.get(name).and_then(|&i| nodes.get(i)) {
            Some(n) if is_it(n) => Some(n),
            _ => nodes.iter().find(|n| is_it(n)),
        }
    }

    /// The value of the `Constant` node producing `name`; `None` when no Constant produces it.
    pub fn constant(&self, name: &str) -> Result<Option<ConstantValue<'_>>> {
        self.constant_node(name).map(|node| self.constant_value(node)).transpose()
    }

    /// The value a `Constant` node holds. A Constant without exactly one value attribute is an
    /// error.
    pub fn constant_value<'n>(&self, node: &'n NodeProto) -> Result<ConstantValue<'n>> {
        let mut found = Vec::new();
        for a in &node.attribute {
            let v = match a.name.as_str() {
                "value" => ConstantValue::Tensor(
                    a.t.as_ref().ok_or_else(|| self.node_error(node, "attribute `value` holds no tensor".into()))?,
                ),
                "value_float" => ConstantValue::Float(a.f),
                "value_floats" => ConstantValue::Floats(&a.floats),
                "value_int" => ConstantValue::Int(a.i),
                "value_ints" => ConstantValue::Ints(&a.ints),
                "value_string" => ConstantValue::String(&a.s),
                "value_strings" => ConstantValue::Strings(&a.strings),
                "sparse_value" => ConstantValue::Sparse(
                    a.sparse_tensor
                        .as_ref()
                        .ok_or_else(|| self.node_error(node, "attribute `sparse_value` holds no sparse tensor".into()))?,
                ),
                _ => continue,
            };
            found.push(v);
        }
        match found.as_slice() {
            [v] => Ok(*v),
            _ => Err(self.node_error(node, format!("has {} value attributes, not one", found.len()))),
        }
    }

    /// The declared type of the graph value `name` (from the graph's inputs, outputs and
    /// `value_info`; tensor types only).
    pub fn value_type(&self, name: &str) -> Option<&ValueType> {
        self.value_types.get(name)
    }

    /// Shape and f32 values of `name`, an initializer or a `Constant` node's output;
    /// `None` when it is neither.
    pub fn value_f32(&self, name: &str) -> Result<Option<TensorF32<'_>>> {
        if let Some(t) = self.initializer(name) {
            return self.tensor_f32(t).map(Some);
        }
        let Some(node) = self.constant_node(name) else { return Ok(None) };
        let node_error = |what: &str| self.node_error(node, format!("holds {what}, not floats"));
        match self.constant_value(node)? {
            ConstantValue::Tensor(t) => self.tensor_f32(t).map(Some),
            ConstantValue::Float(v) => Ok(Some((vec![], Cow::Owned(vec![v])))),
            ConstantValue::Floats(v) => Ok(Some((vec![v.len()], Cow::Borrowed(v)))),
            ConstantValue::Sparse(t) => self.sparse_f32(t).map(|(shape, v)| Some((shape, Cow::Owned(v)))),
            ConstantValue::Int(_) | ConstantValue::Ints(_) => Err(node_error("integers")),
            ConstantValue::String(_) | ConstantValue::Strings(_) => Err(node_error("strings")),
        }
    }

    /// Shape and i64 values of `name`, an initializer or a `Constant` node's output;
    /// `None` when it is neither.
    pub fn value_i64(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<i64>)>> {
        if let Some(t) = self.initializer(name) {
            return self.tensor_i64(t).map(Some);
        }
        let Some(node) = self.constant_node(name) else { return Ok(None) };
        let node_error = |what: &str| self.node_error(node, format!("holds {what}, not integers"));
        match self.constant_value(node)? {
            ConstantValue::Tensor(t) => self.tensor_i64(t).map(Some),
            ConstantValue::Int(v) => Ok(Some((vec![], vec![v]))),
            ConstantValue::Ints(v) => Ok(Some((vec![v.len()], v.to_vec()))),
            ConstantValue::Sparse(t) => self.sparse_i64(t).map(Some),
            ConstantValue::Float(_) | ConstantValue::Floats(_) => Err(node_error("floats")),
            ConstantValue::String(_) | ConstantValue::Strings(_) => Err(node_error("strings")),
        }
    }

    /// Shape and values of a float tensor (FLOAT, FLOAT16, BFLOAT16, DOUBLE) as f32: an
    /// initializer, a Constant's tensor, any tensor of this model. FLOAT data held in the
    /// proto is borrowed where it can be (typed field, or aligned `raw_data`).
    pub fn tensor_f32<'a>(&'a self, t: &'a TensorProto) -> Result<TensorF32<'a>> {
        let bad = |reason: String| self.bad_tensor(t, reason);
        if t.data_type == DataType::Float as i32 && !tensor::is_external(t).map_err(bad)? && t.segment.is_none() {
            let (shape, n) = tensor::shape_of(t).map_err(bad)?;
            if let Some(values) = tensor::borrowed_f32(t, n) {
                return Ok((shape, values));
            }
        }
        let raw = self.tensor_raw(t)?;
        let values = raw.to_f32().map_err(bad)?;
        Ok((raw.shape, Cow::Owned(values)))
    }

    /// Shape and values of an integer tensor (INT64, INT32, and the smaller integer types and
    /// BOOL) as i64: shape constants, axes, indices.
    pub fn tensor_i64(&self, t: &TensorProto) -> Result<(Vec<usize>, Vec<i64>)> {
        let raw = self.tensor_raw(t)?;
        let values = raw.to_i64().map_err(|reason| self.bad_tensor(t, reason))?;
        Ok((raw.shape, values))
    }

    /// A sparse tensor made dense: shape and f32 values (zeros where no value is given).
    pub fn sparse_f32(&self, t: &proto::SparseTensorProto) -> Result<(Vec<usize>, Vec<f32>)> {
        let values = t.values.as_ref().ok_or_else(|| self.bad_sparse(t, "no values"))?;
        let (_, v) = self.tensor_f32(values)?;
        self.densify(t, &v, 0.0)
    }

    /// A sparse integer tensor made dense: shape and i64 values (zeros where no value is given).
    pub fn sparse_i64(&self, t: &proto::SparseTensorProto) -> Result<(Vec<usize>, Vec<i64>)> {
        let values = t.values.as_ref().ok_or_else(|| self.bad_sparse(t, "no values"))?;
        let (_, v) = self.tensor_i64(values)?;
        self.densify(t, &v, 0)
    }

    /// Scatters the `values` of sparse tensor `t` into a dense tensor of its shape: indices are
    /// `[NNZ]` linear positions or `[NNZ, rank]` coordinates, as ONNX allows.
    fn densify<T: Copy>(&self, t: &proto::SparseTensorProto, values: &[T], zero: T) -> Result<(Vec<usize>, Vec<T>)> {
        let shape = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| self.bad_sparse(t, "a negative dimension")))
            .collect::<Result<Vec<usize>>>()?;
        let n = tensor::checked_product(shape.iter().copied()).ok_or_else(|| self.bad_sparse(t, "too many elements"))?;
        let indices = t.indices.as_ref().ok_or_else(|| self.bad_sparse(t, "no indices"))?;
        let (ishape, idx) = self.tensor_i64(indices)?;
        let nnz = values.len();
        let positions: Vec<i64> = match ishape.as_slice() {
            [k] if *k == nnz => idx,
            [k, r] if *k == nnz && *r == shape.len() => idx
                .chunks_exact(shape.len().max(1))
                .map(|c| c.iter().zip(&shape).fold(0i64, |acc, (&i, &d)| acc.saturating_mul(d as i64).saturating_add(i)))
                .collect(),
            other => return Err(self.bad_sparse(t, &format!("indices of shape {other:?} for {nnz} values of rank {}", shape.len()))),
        };
        let mut dense = vec![zero; n];
        for (&p, &v) in positions.iter().zip(values) {
            let slot = usize::try_from(p).ok().and_then(|p| dense.get_mut(p)).ok_or_else(|| self.bad_sparse(t, &format!("index {p} is out of range")))?;
            *slot = v;
        }
        Ok((shape, dense))
    }

    fn bad_sparse(&self, t: &proto::SparseTensorProto, reason: &str) -> FrontendError {
        let name = t.values.as_ref().map(|v| v.name.clone()).unwrap_or_default();
        FrontendError::BadTensor { path: self.path.clone(), tensor: name, reason: format!("sparse tensor: {reason}") }
    }

    /// The packed data, scales and zero points of the 4-bit weight `q`, checked against its
    /// sizes.
    pub fn packed_weight(&self, q: &quant::BlockQuant) -> Result<quant::Packed> {
        let missing = |name: &str| FrontendError::MissingTensor { path: self.path.clone(), tensor: name.to_string() };
        let data_init = self.initializer(&q.data).ok_or_else(|| missing(&q.data))?;
        let data = self.tensor_raw(data_init)?;
        if !matches!(data.data_type, DataType::Uint8) {
            return Err(self.bad_tensor(data_init, format!("packed 4-bit data must be UINT8, not {}", data.data_type.as_str_name())));
        }
        let (_, scales) = self.value_f32(&q.scales)?.ok_or_else(|| missing(&q.scales))?;
        let zero_points = match &q.zero_points {
            None => None,
            Some(z) => {
                let t = self.initializer(z).ok_or_else(|| missing(z))?;
                let raw = self.tensor_raw(t)?;
                if raw.data_type != DataType::Uint8 {
                    return Err(self.bad_tensor(t, "zero points must be packed UINT8".into()));
                }
                Some(raw.bytes.to_vec())
            }
        };
        Ok(quant::Packed { data: data.bytes.to_vec(), scales: scales.into_owned(), zero_points })
    }

    /// A tensor's data as raw little-endian bytes, whatever its storage: `raw_data`, a typed
    /// field, or an external data file (mapped, not copied). Checks its size against its shape.
    pub fn tensor_raw(&self, t: &TensorProto) -> Result<RawTensor> {
        let bad = |reason: String| self.bad_tensor(t, reason);
        let data_type = tensor::data_type_of(t).map_err(bad)?;
        let (shape, n) = tensor::shape_of(t).map_err(bad)?;
        let bytes = if tensor::is_external(t).map_err(bad)? {
            let expected = raw_len(data_type, n)
                .ok_or_else(|| bad(format!("{} tensors cannot be external", data_type.as_str_name())))?;
            let bytes = self.external_bytes(t)?;
            tensor::check_len(bytes.len(), expected, t, data_type).map_err(bad)?;
            bytes
        } else {
            tensor::inline_bytes(t, data_type, n).map_err(bad)?
        };
        Ok(RawTensor { shape, data_type, bytes })
    }

    /// Reads every external initializer (and `Constant` tensor) into the model, so that
    /// [`OnnxFile::model`] stands alone, e.g. for [`write_model`] to another folder. The data
    /// stays in the mapped external files: nothing is copied.
    pub fn load_external_data(&mut self) -> Result<()> {
        let graph = self.graph();
        let mut inits = Vec::new();
        for (i, t) in graph.initializer.iter().enumerate() {
            if tensor::is_external(t).map_err(|r| self.bad_tensor(t, r))? {
                inits.push((i, self.tensor_raw(t)?.bytes));
            }
        }
        let mut consts = Vec::new();
        for (i, node) in graph.node.iter().enumerate() {
            for (j, a) in node.attribute.iter().enumerate() {
                if let Some(t) = a.t.as_ref() {
                    if tensor::is_external(t).map_err(|r| self.bad_tensor(t, r))? {
                        consts.push((i, j, self.tensor_raw(t)?.bytes));
                    }
                }
            }
        }
        let Some(graph) = self.model.graph.as_mut() else { return Ok(()) };
        let inline = |t: &mut TensorProto, bytes: Bytes| {
            t.raw_data = bytes;
            t.data_location = proto::tensor_proto::DataLocation::Default as i32;
            t.external_data.clear();
        };
        for (i, bytes) in inits {
            if let Some(t) = graph.initializer.get_mut(i) {
                inline(t, bytes);
            }
        }
        for (i, j, bytes) in consts {
            if let Some(t) = graph.node.get_mut(i).and_then(|n| n.attribute.get_mut(j)).and_then(|a| a.t.as_mut()) {
                inline(t, bytes);
            }
        }
        Ok(())
    }

    /// Attribute `name` of `node` as an int; `None` when absent, an error when of another type.
    pub fn attr_int(&self, node: &NodeProto, name: &str) -> Result<Option<i64>> {
        Ok(self.typed_attr(node, name, AttributeType::Int)?.map(|a| a.i))
    }

    /// Attribute `name` of `node` as ints.
    pub fn attr_ints<'n>(&self, node: &'n NodeProto, name: &str) -> Result<Option<&'n [i64]>> {
        Ok(self.typed_attr(node, name, AttributeType::Ints)?.map(|a| a.ints.as_slice()))
    }

    /// Attribute `name` of `node` as a float.
    pub fn attr_float(&self, node: &NodeProto, name: &str) -> Result<Option<f32>> {
        Ok(self.typed_attr(node, name, AttributeType::Float)?.map(|a| a.f))
    }

    /// Attribute `name` of `node` as floats.
    pub fn attr_floats<'n>(&self, node: &'n NodeProto, name: &str) -> Result<Option<&'n [f32]>> {
        Ok(self.typed_attr(node, name, AttributeType::Floats)?.map(|a| a.floats.as_slice()))
    }

    /// Attribute `name` of `node` as a string (UTF-8).
    pub fn attr_string<'n>(&self, node: &'n NodeProto, name: &str) -> Result<Option<&'n str>> {
        let Some(a) = self.typed_attr(node, name, AttributeType::String)? else { return Ok(None) };
        std::str::from_utf8(&a.s)
            .map(Some)
            .map_err(|_| self.node_error(node, format!("attribute `{name}` is not UTF-8")))
    }

    /// Attribute `name` of `node` as a tensor.
    pub fn attr_tensor<'n>(&self, node: &'n NodeProto, name: &str) -> Result<Option<&'n TensorProto>> {
        match self.typed_attr(node, name, AttributeType::Tensor)? {
            None => Ok(None),
            Some(a) => match a.t.as_ref() {
                Some(t) => Ok(Some(t)),
                None => Err(self.node_error(node, format!("attribute `{name}` holds no tensor"))),
            },
        }
    }

    fn typed_attr<'n>(
        &self,
        node: &'n NodeProto,
        name: &str,
        expected: AttributeType,
    ) -> Result<Option<&'n AttributeProto>> {
        let Some(a) = node.attr(name) else { return Ok(None) };
        // IR versions before 0.0.2 had no `type`: take the field asked for.
        if a.r#type == expected as i32 || a.r#type == AttributeType::Undefined as i32 {
            return Ok(Some(a));
        }
        let found = AttributeType::try_from(a.r#type)
            .map(|t| t.as_str_name().to_string())
            .unwrap_or_else(|_| a.r#type.to_string());
        Err(self.node_error(node, format!("attribute `{name}` is {found}, not {}", expected.as_str_name())))
    }

    fn node_error(&self, node: &NodeProto, reason: String) -> FrontendError {
        let name =
            if node.name.is_empty() { node.output.first().map(String::as_str).unwrap_or("") } else { &node.name };
        FrontendError::Corrupt {
            path: self.path.clone(),
            format: FORMAT,
            reason: format!("node `{name}` ({}): {reason}", node.op_type),
        }
    }

    fn bad_tensor(&self, t: &TensorProto, reason: String) -> FrontendError {
        FrontendError::BadTensor { path: self.path.clone(), tensor: t.name.clone(), reason }
    }

    /// The bytes of an external tensor: `location` (inside the model's folder), `offset`,
    /// `length`, all checked.
    fn external_bytes(&self, t: &TensorProto) -> Result<Bytes> {
        let bad = |reason: String| self.bad_tensor(t, reason);
        let (mut location, mut offset, mut length) = (None, 0u64, None);
        for kv in &t.external_data {
            let number = |v: &str| {
                v.trim().parse::<u64>().map_err(|_| bad(format!("external data {} `{v}` is not a byte count", kv.key)))
            };
            match kv.key.as_str() {
                "location" => location = Some(kv.value.as_str()),
                "offset" => offset = number(&kv.value)?,
                "length" => length = Some(number(&kv.value)?),
                _ => {}
            }
        }
        let location = location.ok_or_else(|| bad("external data without a `location`".into()))?;
        let rel = Path::new(location);
        let inside = !location.is_empty()
            && !rel.is_absolute()
            && rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            return Err(bad(format!(
                "external data location `{location}` is not a relative path inside the model's folder"
            )));
        }
        let path = self.dir.join(rel);
        // A link inside the folder may still point out of it.
        if let (Ok(real), Ok(dir)) = (path.canonicalize(), self.dir.canonicalize()) {
            if !real.starts_with(&dir) {
                return Err(bad(format!("external data location `{location}` leads out of the model's folder")));
            }
        }
        let file = self.external_file(&path, t)?;
        let size = file.len() as u64;
        let end = match length {
            Some(len) => offset.checked_add(len),
            None => Some(size.max(offset)),
        };
        let range = match end {
            Some(end) if offset <= size && end <= size => (offset as usize)..(end as usize),
            _ => {
                let len = length.map_or_else(|| "the rest".to_string(), |l| l.to_string());
                return Err(FrontendError::BadTensor {
                    path,
                    tensor: t.name.clone(),
                    reason: format!(
                        "external data at offset {offset}, length {len}, is past the end of the file ({size} bytes)"
                    ),
                });
            }
        };
        Ok(file.slice(range))
    }

    /// The mapped external data file at `path`, mapped on first use.
    fn external_file(&self, path: &Path, t: &TensorProto) -> Result<Bytes> {
        let mut files = self.external.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(bytes) = files.get(path) {
            return Ok(bytes.clone());
        }
        let bytes = map_file(path).map_err(|e| match e {
            FrontendError::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
                FrontendError::Missing { path, what: format!("external data of tensor `{}`", t.name) }
            }
            other => other,
        })?;
        files.insert(path.to_path_buf(), bytes.clone());
        Ok(bytes)
    }
}

impl NodeProto {
    /// The attribute called `name`, if the node has it.
    pub fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.attribute.iter().find(|a| a.name == name)
    }
}

/// Whether `domain` is ONNX's default operator domain.
fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

/// A tensor (or sparse tensor) type's element type and shape.
fn value_type(t: &proto::TypeProto) -> Option<ValueType> {
    let (elem_type, shape) = match t.value.as_ref()? {
        type_proto::Value::TensorType(t) => (t.elem_type, t.shape.as_ref()),
        type_proto::Value::SparseTensorType(t) => (t.elem_type, t.shape.as_ref()),
        _ => return None,
    };
    let shape = shape.map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(proto::tensor_shape_proto::dimension::Value::DimValue(v)) => usize::try_from(*v).ok().map(Dim::Fixed),
                Some(proto::tensor_shape_proto::dimension::Value::DimParam(p)) => Some(Dim::Sym(p.clone())),
                None => None,
            })
            .collect()
    });
    Some(ValueType { elem_type, shape })
}

/// Maps `path` read-only as `Bytes` (an empty file gives empty bytes).
fn map_file(path: &Path) -> Result<Bytes> {
    let io = |source| FrontendError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io)?;
    if file.metadata().map_err(io)?.len() == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the map is read-only; prunec never writes its inputs in place (outputs are
    // renamed into place), and a file changed by another process while mapped is outside
    // what any reader can guard against.
    let map = unsafe { Mmap::map(&file) }.map_err(io)?;
    Ok(Bytes::from_owner(map))
}

#[cfg(test)]
mod tests;
