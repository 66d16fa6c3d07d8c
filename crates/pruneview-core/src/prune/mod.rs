//! Pruning: which weights of each layer to remove, and how many per layer.
//!
//! Stages, one module each (DESIGN.md, "The method"):
//! - [`rank`]: the order in which a layer's weights are pruned, and masks from a sparsity;
//! - [`distortion`]: what D compares (raw outputs, or scores and confidence-weighted boxes);
//! - [`curves`]: the `pruneview-curves/1` file (per-layer distortion vs sparsity), merging;
//! - [`probe`]: computing curves: Gauss-Newton probes (predicted) and measured curves;
//! - [`alloc`]: per-layer sparsities under a FLOPs or params budget (DP and baselines);
//! - [`allocation_file`]: the `pruneview-allocation/1` file an allocation is saved as;
//! - [`export`]: masks, pruned weights, allocation JSON and CSV;
//! - [`recover`]: statistics repair, weight reconstruction and distillation of a pruned model.
//!
//! Pruning knows the detector only through its parameterised units and the roles and layouts
//! of its raw outputs ([`crate::detect::OutputKind`]); it knows nothing of the UI.

pub mod alloc;
pub mod allocation_file;
pub mod curves;
pub mod distortion;
pub mod export;
pub mod measure;
pub mod probe;
pub mod rank;
pub mod recover;

pub use allocation_file::{Allocation, Budget, BudgetKind};
pub use curves::{Curves, LayerCurve};
pub use distortion::Weighting;
pub use rank::{Ranking, pruned_count};

use crate::detect::OutputRole;

/// The two distortion groups of DESIGN.md: head outputs that score (`cls_preds`, `hm`) and
/// outputs that place boxes (`box_preds`, `dir_cls_preds`, CenterPoint's regression maps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    Confidence,
    Locality,
}

impl Group {
    pub const ALL: [Group; 2] = [Group::Confidence, Group::Locality];

    /// The group of a raw head output, from the role its head gives it.
    pub fn of(role: OutputRole) -> Group {
        match role {
            OutputRole::Confidence => Group::Confidence,
            OutputRole::Locality => Group::Locality,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Group::Confidence => "confidence",
            Group::Locality => "locality",
        }
    }
}

/// User weights of the two groups (DESIGN.md: lambda_conf, lambda_loc; default 1 and 1).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lambdas {
    pub confidence: f64,
    pub locality: f64,
}

impl Default for Lambdas {
    fn default() -> Self {
        Lambdas {
            confidence: 1.0,
            locality: 1.0,
        }
    }
}

impl Lambdas {
    pub fn combine(&self, confidence: f64, locality: f64) -> f64 {
        self.confidence * confidence + self.locality * locality
    }
}
