//! The `pruneview-allocation/1` file: one sparsity per layer, and what it costs and keeps.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::alloc::{Constraint, Method};
use super::curves::ModelInfo;
use super::{Lambdas, Ranking};

pub const ALLOCATION_FORMAT: &str = "pruneview-allocation/1";

/// What a budget limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetKind {
    Flops,
    Params,
}

/// Keep at most `keep` (a fraction in [0, 1]) of the layers' dense FLOPs or params.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub kind: BudgetKind,
    pub keep: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    pub format: String,
    pub method: Method,
    pub budget: Budget,
    pub model: ModelInfo,
    pub ranking: Ranking,
    pub lambda: Lambdas,
    /// Fractions of the layers' dense FLOPs and params that the allocation keeps.
    pub flops_kept: f64,
    pub params_kept: f64,
    /// Absolute dense and kept FLOPs per scan.
    pub flops_dense: f64,
    pub flops: f64,
    /// Sum over layers of the predicted per-layer distortion (additivity).
    pub predicted_distortion: f64,
    pub layers: Vec<LayerSparsity>,
    /// The DP's soft cap on layer sparsity ([`crate::prune::alloc::Problem::layer_cap`]),
    /// when one applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_cap: Option<f64>,
    /// The user's per-layer constraints; layers not listed were unconstrained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<LayerConstraint>,
}

/// One layer's constraint, as `allocation.json` records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerConstraint {
    pub name: String,
    #[serde(flatten)]
    pub constraint: Constraint,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSparsity {
    pub name: String,
    pub sparsity: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum AllocationError {
    #[error("{path}: cannot read allocation: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a pruneview-allocation/1 file: {reason}")]
    Parse { path: String, reason: String },
}

impl Allocation {
    pub fn load(path: &Path) -> Result<Allocation, AllocationError> {
        let p = path.display().to_string();
        let text =
            crate::io::read_text_limited(path, crate::io::MAX_CONFIG_BYTES).map_err(|source| {
                AllocationError::Io {
                    path: p.clone(),
                    source,
                }
            })?;
        let a: Allocation = serde_json::from_str(&text).map_err(|e| AllocationError::Parse {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        let bad = |reason: String| AllocationError::Parse {
            path: p.clone(),
            reason,
        };
        if a.format != ALLOCATION_FORMAT {
            return Err(bad(format!("format is `{}`", a.format)));
        }
        if let Some(l) = a.layers.iter().find(|l| !(0.0..=1.0).contains(&l.sparsity)) {
            return Err(bad(format!(
                "layer `{}` has sparsity {} outside [0, 1]",
                l.name, l.sparsity
            )));
        }
        Ok(a)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn sparsity_of(&self, name: &str) -> Option<f64> {
        self.layers
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.sparsity)
    }
}
