//! Errors of the IR: ill-typed ops, dangling edges, parameters that disagree with their ops.

use crate::types::ValueType;

/// Why an IR operation or check failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum IrError {
    /// An op was given inputs of the wrong number or types.
    #[error("node `{node}` ({op}): {reason}")]
    BadOperands {
        /// The node's name.
        node: String,
        /// The op's mnemonic.
        op: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A value's recorded type no longer agrees with what its op infers.
    #[error("node `{node}`: output {output} is recorded as {recorded} but its op infers {inferred}")]
    TypeDrift {
        /// The node's name.
        node: String,
        /// The output index.
        output: usize,
        /// The recorded type.
        recorded: ValueType,
        /// The inferred type.
        inferred: ValueType,
    },
    /// A parameter node names a parameter the store lacks, or whose shape differs.
    #[error("parameter `{name}`: {reason}")]
    BadParam {
        /// The parameter's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A parameter node whose shape is symbolic cannot lose indices.
    #[error("`{name}` has a symbolic shape")]
    SymbolicParam {
        /// The parameter's name.
        name: String,
    },
    /// Pruning would remove indices an op cannot lose (a key/value head without the query
    /// heads it serves).
    #[error("node `{node}`: {reason}")]
    Unprunable {
        /// The node's name.
        node: String,
        /// What cannot be removed.
        reason: String,
    },
    /// The graph's structure is broken (missing input, cycle, dangling id).
    #[error("graph: {0}")]
    Structure(String),
    /// Reading a parameter's data failed.
    #[error("parameter `{name}`: reading {source_desc}: {reason}")]
    Read {
        /// The parameter's name.
        name: String,
        /// Where it is stored (file).
        source_desc: String,
        /// What went wrong.
        reason: String,
    },
}

/// Result of IR operations.
pub type Result<T, E = IrError> = std::result::Result<T, E>;
