//! The parameter store: tensors by name. Data stays in the input file (memory-mapped by the
//! frontend) until a pass reads it; a pass that shrinks a tensor stores a new, smaller one.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::error::{IrError, Result};
use crate::types::DType;

/// Where a parameter's data comes from: a frontend implements this over its file format.
pub trait TensorSource: Send + Sync + fmt::Debug {
    /// The data as f32, row-major in the parameter's shape.
    fn read_f32(&self) -> std::result::Result<Vec<f32>, String>;
    /// The element type as stored (a quantized GGUF tensor reports `F32`, what it decodes to).
    fn stored_dtype(&self) -> DType;
    /// Where the data lives, for messages (`file`, `file @ offset`).
    fn describe(&self) -> String;
}

/// A parameter's data.
#[derive(Debug, Clone)]
pub enum ParamData {
    /// Still in the input file.
    Source(Arc<dyn TensorSource>),
    /// In memory, f32, row-major.
    Owned(Arc<Vec<f32>>),
}

/// One parameter.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its element type as stored.
    pub dtype: DType,
    /// Its data.
    pub data: ParamData,
}

impl Param {
    /// A parameter held in memory.
    pub fn owned(shape: Vec<usize>, values: Vec<f32>) -> Result<Param> {
        let n: usize = shape.iter().product();
        if n != values.len() {
            return Err(IrError::BadParam {
                name: String::new(),
                reason: format!("{} values for shape {shape:?}", values.len()),
            });
        }
        Ok(Param { shape, dtype: DType::F32, data: ParamData::Owned(Arc::new(values)) })
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Parameters by name.
#[derive(Debug, Clone, Default)]
pub struct ParamStore {
    params: BTreeMap<String, Param>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> ParamStore {
        ParamStore::default()
    }

    /// Adds or replaces a parameter.
    pub fn insert(&mut self, name: impl Into<String>, param: Param) {
        self.params.insert(name.into(), param);
    }

    /// The parameter `name`.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.get(name)
    }

    /// Removes the parameter `name`.
    pub fn remove(&mut self, name: &str) -> Option<Param> {
        self.params.remove(name)
    }

    /// Names and parameters, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Param)> {
        self.params.iter()
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Total number of elements over all parameters.
    pub fn numel(&self) -> usize {
        self.params.values().map(Param::numel).sum()
    }

    /// Reads parameter `name` as f32 (decoding or dequantizing it from its file).
    pub fn read_f32(&self, name: &str) -> Result<Arc<Vec<f32>>> {
        let p = self
            .params
            .get(name)
            .ok_or_else(|| IrError::BadParam { name: name.to_string(), reason: "not in the store".into() })?;
        match &p.data {
            ParamData::Owned(v) => Ok(Arc::clone(v)),
            ParamData::Source(s) => {
                let v = s.read_f32().map_err(|reason| IrError::Read {
                    name: name.to_string(),
                    source_desc: s.describe(),
                    reason,
                })?;
                if v.len() != p.numel() {
                    return Err(IrError::Read {
                        name: name.to_string(),
                        source_desc: s.describe(),
                        reason: format!("{} values for shape {:?}", v.len(), p.shape),
                    });
                }
                Ok(Arc::new(v))
            }
        }
    }
}
