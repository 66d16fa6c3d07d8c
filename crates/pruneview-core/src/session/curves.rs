//! Curves of a model on calibration scans: predicted (Gauss-Newton probes), measured (prune
//! one layer, re-run) and the fidelity check that compares them.

use std::collections::HashMap;
use std::path::Path;

use crate::detect::Detector;
use crate::progress::Control;
use crate::prune::alloc::{DEFAULT_BINS, Frontier, Problem};
use crate::prune::curves::{Curves, Fidelity, Measured, OutputNorm};
use crate::prune::measure::{DenseReference, Measurer, layer_fidelity};
use crate::prune::probe::CalibScan;
use crate::prune::{BudgetKind, Lambdas, Weighting};

use super::{Result, fail};

/// The prune orders that curves ranked by magnitude assume, one per unit
/// ([`Detector::units`] order): what [`crate::prune::probe::predicted_curves`] returns with
/// them, rebuilt from the weights alone (for curves read back from a file). Saliency orders
/// need the probes' Gauss-Newton diagonal and cannot be rebuilt this way.
pub fn magnitude_orders(det: &Detector) -> Vec<Vec<u32>> {
    use rayon::prelude::*;
    det.units()
        .par_iter()
        .map(|u| crate::prune::rank::magnitude_order(&u.weight.data))
        .collect()
}

/// The output normalisation of an earlier curves file, so that shards computed on different
/// scans can be merged exactly (refused when it was made for another distortion).
pub fn normalization_from(path: &Path, weighting: Weighting) -> Result<Vec<OutputNorm>> {
    let c = Curves::load(path).map_err(fail)?.calibration;
    if c.distortion != weighting {
        return Err(format!(
            "{}: normalised for the {} distortion, not {}; pass --distortion {}",
            path.display(),
            c.distortion.name(),
            weighting.name(),
            c.distortion.name()
        )
        .into());
    }
    Ok(c.normalization)
}

/// Which measured curves to compute, and where to check additivity.
pub struct MeasureSettings<'a> {
    /// Indices into [`Detector::units`].
    pub units: &'a [usize],
    /// Sparsities to measure each layer at.
    pub levels: &'a [f64],
    /// FLOPs budgets where the DP allocation's predicted sum is checked against the measured
    /// joint distortion (none: no check).
    pub additivity: &'a [f64],
    /// Group weights of the fidelity report.
    pub lambdas: Lambdas,
    /// Measure each point after statistics repair (recovery-aware curves).
    pub repair_statistics: bool,
}

/// Measures the curves of `m.units` and the fidelity report; fills `curves` (measured
/// values and fidelity) in place.
pub fn measure(
    det: &Detector,
    scans: &[CalibScan],
    curves: &mut Curves,
    orders: &[Vec<u32>],
    m: &MeasureSettings,
    ctl: &Control,
) -> Result<()> {
    let (units, levels, lambdas) = (m.units, m.levels, m.lambdas);
    if levels.iter().any(|s| !(0.0..=1.0).contains(s)) {
        return Err("measured levels must lie in [0, 1]".into());
    }
    let norms = curves.calibration.normalization.clone();
    let weighting = curves.calibration.distortion;
    let measurer = Measurer {
        det,
        scans,
        reference: DenseReference::compute(det, scans, weighting, norms, &ctl.silenced())?,
        orders,
    };
    for (&u, m) in
        units
            .iter()
            .zip(measurer.measured_curves(units, levels, m.repair_statistics, ctl)?)
    {
        curves.layers[u].measured = m;
    }
    let mut fidelity = Fidelity {
        layers: layer_fidelity(curves, lambdas),
        additivity: Vec::new(),
    };
    if !m.additivity.is_empty() {
        let problem = Problem::from_curves(curves, lambdas, &HashMap::new()).map_err(fail)?;
        let frontier = Frontier::build(&problem, BudgetKind::Flops, DEFAULT_BINS).map_err(fail)?;
        for &keep in m.additivity {
            let sol = frontier.query(keep).map_err(fail)?;
            let check = measurer.additivity(curves, lambdas, keep, &sol, &ctl.silenced())?;
            fidelity.additivity.push(check);
        }
    }
    curves.fidelity = Some(fidelity);
    Ok(())
}

/// Measured curves of every layer (one [`Measured`] per layer, in curve order), without
/// touching `curves`.
pub fn measured_curves(
    det: &Detector,
    scans: &[CalibScan],
    curves: &Curves,
    orders: &[Vec<u32>],
    levels: &[f64],
    ctl: &Control,
) -> Result<Vec<Measured>> {
    let mut c = curves.clone();
    let units: Vec<usize> = (0..c.layers.len()).collect();
    let settings = MeasureSettings {
        units: &units,
        levels,
        additivity: &[],
        lambdas: Lambdas::default(),
        repair_statistics: false,
    };
    measure(det, scans, &mut c, orders, &settings, ctl)?;
    Ok(c.layers.into_iter().map(|l| l.measured).collect())
}
