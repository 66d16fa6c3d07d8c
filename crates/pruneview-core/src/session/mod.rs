//! The pipeline in one place: load a model and its scans, compute curves, plan and solve
//! allocations, recover, evaluate and export. The CLI subcommands and the app's background
//! jobs are thin callers of these functions, so both read scans, bin the DP, pick baseline
//! weights and check a file's sha the same way.
//!
//! Every long function takes a [`Control`](crate::progress::Control) and fails with an
//! [`Error`]: cancelled, or a message for the user that names the file and the problem.

pub mod compare;
pub mod curves;
pub mod evaluate;
pub mod export;
pub mod model;
pub mod plan;
pub mod recover;
pub mod scans;

use crate::progress::Cancelled;
use crate::prune::probe::ProbeError;

/// Why a pipeline step gave no value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The user (or newer work of the same kind) cancelled it: nothing to report.
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Failed(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Any other error, as the message the user sees.
pub fn fail(e: impl std::fmt::Display) -> Error {
    Error::Failed(e.to_string())
}

impl From<Cancelled> for Error {
    fn from(_: Cancelled) -> Self {
        Error::Cancelled
    }
}

impl From<ProbeError> for Error {
    fn from(e: ProbeError) -> Self {
        match e {
            ProbeError::Cancelled => Error::Cancelled,
            e => fail(e),
        }
    }
}

impl From<crate::eval::DatasetError> for Error {
    fn from(e: crate::eval::DatasetError) -> Self {
        match e {
            crate::eval::DatasetError::Cancelled => Error::Cancelled,
            e => fail(e),
        }
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::Failed(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::Failed(message.to_string())
    }
}
