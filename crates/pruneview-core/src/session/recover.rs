//! A pruned model as it will be used: masks from an allocation's sparsities, then the
//! recovery the user chose (none, statistics repair, or every stage).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::detect::Detector;
use crate::progress::Control;
use crate::prune::probe::CalibScan;
use crate::prune::recover::{self, RecoveryReport, Stages, stats};
use crate::prune::{pruned_count, rank};

use super::Result;

/// Metadata key of the recovery report in a recovered weights file.
pub const META_RECOVERY: &str = "pruneview.recovery";

/// The app's recovery choice (the CLI's `--recover` lists stages; these are its common forms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Recovery {
    /// Masks only: the dense weights times the masks (the paper's form).
    None,
    /// BatchNorm statistics re-estimated on the calibration scans (seconds).
    #[default]
    Statistics,
    /// Statistics, weight reconstruction and distillation (minutes: a background job).
    Full,
}

impl Recovery {
    pub const ALL: [Recovery; 3] = [Recovery::None, Recovery::Statistics, Recovery::Full];

    pub fn stages(self) -> Stages {
        match self {
            Recovery::None => Stages::NONE,
            Recovery::Statistics => Stages {
                stats: true,
                ..Stages::NONE
            },
            Recovery::Full => Stages::ALL,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Recovery::None => "none",
            Recovery::Statistics => "statistics",
            Recovery::Full => "full",
        }
    }
}

/// Per unit (in [`Detector::units`] order) the mask of pruning it at `sparsity[i]` in its
/// rank order `orders[i]` (`None` for a unit left dense): 1 kept, 0 pruned. (Masks from an
/// allocation file are [`recover::unit_masks`].)
pub fn sparsity_masks(sparsity: &[f64], orders: &[Vec<u32>]) -> Vec<Option<Vec<u8>>> {
    sparsity
        .iter()
        .zip(orders)
        .map(|(&s, order)| (pruned_count(s, order.len()) > 0).then(|| rank::mask(order, s)))
        .collect()
}

/// `dense` pruned by `masks` with its BatchNorm statistics re-estimated on `scans` (the
/// statistics stage alone, without the distortion measurements of [`recover::recover`]: fast
/// enough for a preview). Full recovery is [`recover::recover`] itself.
pub fn statistics_repaired(
    dense: &Detector,
    masks: &[Option<Vec<u8>>],
    scans: &[CalibScan],
    ctl: &Control,
) -> Result<Detector> {
    let mut det = recover::masked(dense, masks)?;
    let first = masks
        .iter()
        .position(|m| m.as_ref().is_some_and(|m| m.contains(&0)));
    if let Some(first) = first {
        stats::repair_statistics(&mut det, scans, first, ctl)?;
    }
    Ok(det)
}

/// The metadata that records a recovery in the weights it wrote.
pub fn recovery_metadata(report: &RecoveryReport) -> BTreeMap<String, String> {
    BTreeMap::from([(META_RECOVERY.to_string(), report.to_json())])
}
