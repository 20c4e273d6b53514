//! Errors of statement execution, each with its PostgreSQL SQLSTATE.

use serde::{Deserialize, Serialize};

/// Every error a client can see. Serializable because errors raised on a
/// shard leader travel back to the gateway node.
#[derive(Clone, Debug, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum ExecError {
    #[error("syntax error: {0}")]
    Syntax(String),
    /// The transaction must be retried (e.g. it reached data outside the
    /// set it was ordered with); nothing of it was applied.
    #[error("could not serialize access: {0}")]
    SerializationFailure(String),
    #[error("{0}")]
    FeatureNotSupported(String),
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    #[error("column \"{0}\" does not exist")]
    UndefinedColumn(String),
    #[error("type \"{0}\" does not exist")]
    UndefinedType(String),
    #[error("{0}")]
    InvalidTableDefinition(String),
    #[error("{0}")]
    DuplicateColumn(String),
    #[error("{0}")]
    DatatypeMismatch(String),
    #[error("{0}")]
    InvalidTextRepresentation(String),
    #[error("{0}")]
    NumericValueOutOfRange(String),
    #[error("{0}")]
    StringDataRightTruncation(String),
    #[error("{0}")]
    NotNullViolation(String),
    #[error("duplicate key value violates unique constraint \"{0}_pkey\"")]
    UniqueViolation(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    DivisionByZero(String),
    #[error("{0}")]
    ProgramLimitExceeded(String),
    /// Retryable: no leader known yet, or the leader changed under us.
    #[error("{0}")]
    Unavailable(String),
    /// Retryable: the statement ran out of time (nothing was written).
    #[error("canceling statement due to statement timeout: {0}")]
    StatementTimeout(String),
    /// Retryable: a bounded queue is full.
    #[error("{0}")]
    Overloaded(String),
    #[error("{0}")]
    Internal(String),
    // New variants go last: errors travel and are stored (records) in an
    // encoding that numbers variants in order.
    #[error("{0}")]
    InvalidRegularExpression(String),
    /// An expression failed on the data (a function given a value it
    /// rejects): PostgreSQL's generic data exception.
    #[error("{0}")]
    DataException(String),
    /// Retryable: a statement ordered with the keys a reconnaissance found
    /// met a table that changed since (see `ordo_executor`'s reconnaissance); the
    /// gateway reconnoitres again.
    #[error("could not serialize access: {0}")]
    StaleReconnaissance(String),
    /// Not retryable as is: the statement may or may not have been applied
    /// (a reply lost with its node, a leader deposed mid-commit). The
    /// client must find out, e.g. by reading what it wrote.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// A statement nesting expressions too deeply to process safely.
    #[error("{0}")]
    StatementTooComplex(String),
    /// Retryable: the node's query memory is used up (nothing was written).
    #[error("out of memory: {0}")]
    OutOfMemory(String),
}

/// A storage read that failed: trouble of this node, not a property of the
/// data, so retryable — and never a sequenced verdict or decision, which
/// must be the same on every leader that reaches one. (A corrupt store too:
/// a verdict must not depend on which replica leads; a corrupt replica is
/// one for the operator, see `ordo verify`.)
pub fn storage_error(e: impl std::fmt::Display) -> ExecError {
    ExecError::Unavailable(format!("storage: {e}"))
}

impl From<ordo_vshard::shard::ScanError> for ExecError {
    fn from(e: ordo_vshard::shard::ScanError) -> ExecError {
        match e {
            ordo_vshard::shard::ScanError::TooManyRows(_) => ExecError::ProgramLimitExceeded(e.to_string()),
            ordo_vshard::shard::ScanError::Storage(m) => storage_error(m),
            // The query read too slowly for its snapshot; another is newer.
            ordo_vshard::shard::ScanError::TooOld { .. } => ExecError::SerializationFailure(e.to_string()),
        }
    }
}

impl ExecError {
    /// The SQLSTATE code PostgreSQL would use for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ExecError::Syntax(_) => "42601",
            ExecError::FeatureNotSupported(_) => "0A000",
            ExecError::UndefinedTable(_) => "42P01",
            ExecError::DuplicateTable(_) => "42P07",
            ExecError::UndefinedColumn(_) => "42703",
            ExecError::UndefinedType(_) => "42704",
            ExecError::InvalidTableDefinition(_) => "42P16",
            ExecError::DuplicateColumn(_) => "42701",
            ExecError::DatatypeMismatch(_) => "42804",
            ExecError::InvalidTextRepresentation(_) => "22P02",
            ExecError::NumericValueOutOfRange(_) => "22003",
            ExecError::StringDataRightTruncation(_) => "22001",
            ExecError::NotNullViolation(_) => "23502",
            ExecError::UniqueViolation(_) => "23505",
            ExecError::InvalidParameter(_) => "22023",
            ExecError::DivisionByZero(_) => "22012",
            ExecError::InvalidRegularExpression(_) => "2201B",
            ExecError::DataException(_) => "22000",
            ExecError::ProgramLimitExceeded(_) => "54000",
            ExecError::Unavailable(_) => "57P03",
            ExecError::StatementTimeout(_) => "57014",
            ExecError::Overloaded(_) => "53300",
            ExecError::Internal(_) => "XX000",
            ExecError::SerializationFailure(_) | ExecError::StaleReconnaissance(_) => "40001",
            // PostgreSQL's transaction_resolution_unknown.
            ExecError::OutcomeUnknown(_) => "08007",
            ExecError::StatementTooComplex(_) => "54001",
            ExecError::OutOfMemory(_) => "53200",
        }
    }

    /// Whether a client may simply retry the statement.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ExecError::Unavailable(_)
                | ExecError::Overloaded(_)
                | ExecError::SerializationFailure(_)
                | ExecError::StaleReconnaissance(_)
                | ExecError::StatementTimeout(_)
                | ExecError::OutOfMemory(_)
        )
    }
}

pub type ExecResult<T> = Result<T, ExecError>;

/// Maps a DataFusion error (planning or execution of a query) to SQLSTATE.
pub fn from_datafusion(e: datafusion::error::DataFusionError) -> ExecError {
    use datafusion::error::DataFusionError as D;
    // Errors raised by our own providers travel inside DataFusion's.
    if let D::External(inner) = e.find_root() {
        if let Some(ours) = inner.downcast_ref::<ExecError>() {
            return ours.clone();
        }
    }
    match e.find_root() {
        D::SQL(e, _) => ExecError::Syntax(e.to_string()),
        D::Plan(m) => {
            if m.contains("table") && m.contains("not found") {
                ExecError::UndefinedTable(m.clone())
            } else if m.contains("No field named") || m.contains("not found") {
                ExecError::UndefinedColumn(m.clone())
            } else {
                ExecError::DatatypeMismatch(m.clone())
            }
        }
        D::SchemaError(e, _) => ExecError::UndefinedColumn(e.to_string()),
        D::NotImplemented(m) => ExecError::FeatureNotSupported(m.clone()),
        D::ArrowError(e, _) => {
            let m = e.to_string();
            if m.contains("Regular expression") || m.contains("regex") {
                ExecError::InvalidRegularExpression(m)
            } else if m.contains("Divide by zero") {
                ExecError::DivisionByZero(m)
            } else if m.contains("Cast error") || m.contains("parse") {
                ExecError::InvalidTextRepresentation(m)
            } else if m.contains("overflow") {
                ExecError::NumericValueOutOfRange(m)
            } else {
                ExecError::Internal(m)
            }
        }
        D::Execution(m) if m.contains("Divide by zero") => ExecError::DivisionByZero(m.clone()),
        D::Execution(m) if m.to_lowercase().contains("regex") => ExecError::InvalidRegularExpression(m.clone()),
        // The regex crate's own error, passed through as is.
        D::External(inner) if inner.to_string().starts_with("regex parse error") => {
            ExecError::InvalidRegularExpression(inner.to_string())
        }
        D::Execution(m) => ExecError::DataException(m.clone()),
        D::ResourcesExhausted(m) => ExecError::OutOfMemory(m.clone()),
        other => ExecError::Internal(other.to_string()),
    }
}
