//! The parameter store: tensors by name. Data stays in the input file (memory-mapped by the
//! frontend) until a pass reads it; a pass that shrinks or rescales a tensor stores a
//! [`ParamView`] of it — which indices are kept, which factors apply — computed only when
//! read, so a pruned 7B model is never held in memory as a whole (writers and the streamed
//! runtime read one tensor at a time).

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
    /// The source itself, for a writer that can copy its stored form (a GGUF writer copying
    /// quantized blocks); `None` when there is nothing to copy but values.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// A parameter's data.
#[derive(Debug, Clone)]
pub enum ParamData {
    /// Still in the input file.
    Source(Arc<dyn TensorSource>),
    /// In memory, f32, row-major.
    Owned(Arc<Vec<f32>>),
    /// Another tensor with indices removed and factors applied, computed when read.
    View(Arc<ParamView>),
}

/// A tensor derived from a base tensor when read: along each axis only the `keep` indices (all
/// when `None`), in order; then each of `scales` multiplies every value, one after the other
/// (as the rewrites that asked for them would have, so the values are bit for bit those of
/// rewriting in memory).
#[derive(Debug, Clone)]
pub struct ParamView {
    /// The base tensor's data (never itself a view: views compose).
    pub base: ParamData,
    /// The base tensor's shape.
    pub base_shape: Vec<usize>,
    /// Per axis of the base, the indices kept, increasing; `None`: all of them.
    pub keep: Vec<Option<Vec<usize>>>,
    /// Factors applied after the selection, in order.
    pub scales: Vec<f32>,
}

impl ParamView {
    /// The view's shape.
    pub fn shape(&self) -> Vec<usize> {
        self.base_shape.iter().zip(&self.keep).map(|(&n, k)| k.as_ref().map_or(n, Vec::len)).collect()
    }

    /// Whether the view selects only along `axis` (every other axis whole) and scales nothing:
    /// what a writer may copy from the base's stored rows or blocks directly.
    pub fn selects_only(&self, axis: usize) -> bool {
        self.scales.is_empty() && self.keep.iter().enumerate().all(|(a, k)| a == axis || k.is_none())
    }

    /// The base's values (`base`, row-major in `base_shape`) gathered and scaled.
    pub fn apply(&self, base: &[f32]) -> Vec<f32> {
        let mut out = gather(base, &self.base_shape, &self.keep);
        for &s in &self.scales {
            out.iter_mut().for_each(|v| *v *= s);
        }
        out
    }
}

/// The elements of row-major `data` (of `shape`) at the `keep` indices of each axis (all when
/// `None`), row-major in the kept shape.
fn gather(data: &[f32], shape: &[usize], keep: &[Option<Vec<usize>>]) -> Vec<f32> {
    // the innermost axes kept whole are copied as runs
    let mut inner_axes = shape.len();
    while inner_axes > 0 && keep.get(inner_axes - 1).is_none_or(Option::is_none) {
        inner_axes -= 1;
    }
    let run: usize = shape[inner_axes..].iter().product();
    if inner_axes == 0 {
        return data.to_vec();
    }
    let outer: Vec<Vec<usize>> = (0..inner_axes)
        .map(|a| keep.get(a).cloned().flatten().unwrap_or_else(|| (0..shape[a]).collect()))
        .collect();
    let total: usize = outer.iter().map(Vec::len).product::<usize>() * run;
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    // strides of the base over the outer axes, in elements
    let mut strides = vec![run; inner_axes];
    for a in (0..inner_axes.saturating_sub(1)).rev() {
        strides[a] = strides[a + 1] * shape[a + 1];
    }
    let mut pos = vec![0usize; inner_axes];
    loop {
        let start: usize = pos.iter().enumerate().map(|(a, &p)| outer[a][p] * strides[a]).sum();
        out.extend_from_slice(&data[start..start + run]);
        // next position, last axis fastest
        let mut a = inner_axes;
        loop {
            if a == 0 {
                return out;
            }
            a -= 1;
            pos[a] += 1;
            if pos[a] < outer[a].len() {
                break;
            }
            pos[a] = 0;
        }
    }
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

    /// Reads parameter `name` as f32 (decoding or dequantizing it from its file, gathering
    /// and scaling a view).
    pub fn read_f32(&self, name: &str) -> Result<Arc<Vec<f32>>> {
        let p = self.require(name)?;
        read_data(name, &p.data, &p.shape)
    }

    fn require(&self, name: &str) -> Result<&Param> {
        self.params.get(name).ok_or_else(|| IrError::BadParam { name: name.to_string(), reason: "not in the store".into() })
    }

    /// Parameter `name` with only the `keep` indices of each of its axes (all when `None`), as a
    /// view read lazily; a view of a view selects from the same base.
    pub fn selected(&self, name: &str, keep: Vec<Option<Vec<usize>>>) -> Result<Param> {
        let p = self.require(name)?;
        let bad = |reason: String| IrError::BadParam { name: name.to_string(), reason };
        if keep.len() != p.shape.len() {
            return Err(bad(format!("a selection over {} axes for shape {:?}", keep.len(), p.shape)));
        }
        for (axis, (k, &n)) in keep.iter().zip(&p.shape).enumerate() {
            if let Some(k) = k {
                if k.windows(2).any(|w| w[0] >= w[1]) || k.last().is_some_and(|&i| i >= n) {
                    return Err(bad(format!("axis {axis}: kept indices must increase and stay below {n}")));
                }
            }
        }
        let view = match &p.data {
            ParamData::View(v) => {
                // compose: the new indices pick among the view's own
                let composed = v
                    .keep
                    .iter()
                    .zip(keep)
                    .map(|(old, new)| match (old, new) {
                        (old, None) => old.clone(),
                        (None, Some(new)) => Some(new),
                        (Some(old), Some(new)) => Some(new.iter().map(|&i| old[i]).collect()),
                    })
                    .collect();
                ParamView { base: v.base.clone(), base_shape: v.base_shape.clone(), keep: composed, scales: v.scales.clone() }
            }
            data => ParamView { base: data.clone(), base_shape: p.shape.clone(), keep, scales: Vec::new() },
        };
        Ok(Param { shape: view.shape(), dtype: p.dtype, data: ParamData::View(Arc::new(view)) })
    }

    /// Parameter `name` with every value multiplied by `factor`, as a view read lazily.
    pub fn scaled(&self, name: &str, factor: f32) -> Result<Param> {
        let p = self.require(name)?;
        let mut view = match &p.data {
            ParamData::View(v) => v.as_ref().clone(),
            data => ParamView { base: data.clone(), base_shape: p.shape.clone(), keep: vec![None; p.shape.len()], scales: Vec::new() },
        };
        view.scales.push(factor);
        Ok(Param { shape: p.shape.clone(), dtype: p.dtype, data: ParamData::View(Arc::new(view)) })
    }
}

/// The values of `data` (of parameter `name`, shape `shape`) as f32.
fn read_data(name: &str, data: &ParamData, shape: &[usize]) -> Result<Arc<Vec<f32>>> {
    let numel: usize = shape.iter().product();
    match data {
        ParamData::Owned(v) => Ok(Arc::clone(v)),
        ParamData::Source(s) => {
            let v = s.read_f32().map_err(|reason| IrError::Read { name: name.to_string(), source_desc: s.describe(), reason })?;
            if v.len() != numel {
                return Err(IrError::Read {
                    name: name.to_string(),
                    source_desc: s.describe(),
                    reason: format!("{} values for shape {shape:?}", v.len()),
                });
            }
            Ok(Arc::new(v))
        }
        ParamData::View(view) => {
            let base = read_data(name, &view.base, &view.base_shape)?;
            Ok(Arc::new(view.apply(&base)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> ParamStore {
        let mut s = ParamStore::new();
        s.insert("w", Param::owned(vec![3, 4], (0..12).map(|v| v as f32).collect()).unwrap());
        s
    }

    #[test]
    fn views_select_and_compose() {
        let mut s = store();
        let p = s.selected("w", vec![Some(vec![0, 2]), None]).unwrap();
        assert_eq!(p.shape, [2, 4]);
        s.insert("w", p);
        assert_eq!(*s.read_f32("w").unwrap(), [0.0, 1.0, 2.0, 3.0, 8.0, 9.0, 10.0, 11.0]);
        let p = s.selected("w", vec![Some(vec![1]), Some(vec![1, 3])]).unwrap();
        s.insert("w", p);
        assert_eq!(*s.read_f32("w").unwrap(), [9.0, 11.0]);
        let ParamData::View(v) = &s.get("w").unwrap().data else { panic!("a view") };
        assert_eq!(v.keep, [Some(vec![2]), Some(vec![1, 3])], "composed over the base");
        assert!(matches!(v.base, ParamData::Owned(_)));
        let p = s.scaled("w", 0.5).unwrap();
        s.insert("w", p);
        assert_eq!(*s.read_f32("w").unwrap(), [4.5, 5.5]);
    }

    #[test]
    fn gathers_any_axes() {
        let data: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let shape = [2, 3, 4];
        assert_eq!(gather(&data, &shape, &[None, None, None]), data);
        assert_eq!(gather(&data, &shape, &[None, Some(vec![1]), None]), [4.0, 5.0, 6.0, 7.0, 16.0, 17.0, 18.0, 19.0]);
        assert_eq!(gather(&data, &shape, &[Some(vec![1]), None, Some(vec![0, 3])]), [12.0, 15.0, 16.0, 19.0, 20.0, 23.0]);
        assert!(gather(&data, &shape, &[None, Some(vec![]), None]).is_empty());
    }

    #[test]
    fn bad_selections_are_refused() {
        let s = store();
        assert!(s.selected("w", vec![None]).is_err());
        assert!(s.selected("w", vec![Some(vec![2, 1]), None]).is_err());
        assert!(s.selected("w", vec![Some(vec![3]), None]).is_err());
        assert!(s.selected("x", vec![None, None]).is_err());
    }
}
