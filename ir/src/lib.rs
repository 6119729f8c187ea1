//! # prunec-ir
//!
//! The intermediate representation of prunec: an op-level dataflow graph on petgraph's
//! `StableGraph`, typed values whose batch and sequence dimensions are symbolic, ops that
//! infer their output types, state their axis mappings and say how they shrink when units
//! are pruned, a parameter store by name, a verifier and a stable text printer. Frontends
//! lower models into it, passes analyse and rewrite it, backends run or write it.
//!
//! ```
//! use prunec_ir::{DType, Dim, Graph, Op, Shape, ValueType};
//!
//! let mut g = Graph::new();
//! let x = g.add_value(
//!     Op::Input { name: "x".into(), ty: ValueType::new(DType::F32, Shape(vec![Dim::batch(), Dim::Fixed(64)])) },
//!     "x", None, &[],
//! )?;
//! let w = g.add_value(
//!     Op::Param { name: "w".into(), ty: ValueType::new(DType::F32, Shape::fixed(&[128, 64])) },
//!     "w", None, &[],
//! )?;
//! let y = g.add_value(Op::Linear, "proj", None, &[x, w])?;
//! assert_eq!(g.value_type(y)?.to_string(), "f32[batch, 128]");
//! # Ok::<(), prunec_ir::IrError>(())
//! ```
#![warn(missing_docs)]

pub mod axes;
pub mod error;
pub mod graph;
pub mod groups;
pub mod model;
pub mod op;
pub mod output;
pub mod params;
pub mod print;
pub mod rng;
pub mod segments;
pub mod stats;
pub mod types;
pub mod verify;

pub use axes::{repeat_ranges, AxisLink, AxisMapping, Port, PortAxis};
pub use error::{IrError, Result};
pub use graph::{Edge, Graph, Node, NodeId, ValueId};
pub use groups::{Element, Group, GroupAxis, GroupKind, Unit};
pub use model::{ArchConfig, Model, ModelInfo, ParamOrigin, SourceFormat, SourceValue};
pub use op::{Attention, BinaryOp, Op, ParamEdit, PrefixPart, RemovedIndices, Rope, RopeLayout, RopeScaling, Shrink, UnaryOp};
pub use params::{Param, ParamData, ParamStore, ParamView, TensorSource};
pub use print::print;
pub use segments::{Segment, Segments};
pub use stats::{CalibrationStats, GradValues, GradView, Moments, ParamGradient};
pub use types::{broadcast, BroadcastDim, DType, Dim, Shape, ValueType};
pub use verify::verify;
