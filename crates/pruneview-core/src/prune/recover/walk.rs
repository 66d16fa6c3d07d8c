//! Walking the network unit by unit over all calibration scans at once: the loop that
//! statistics repair and layer-wise reconstruction share.

use rayon::prelude::*;

use crate::detect::{Detector, DetectorError, Sweep};
use crate::progress::Control;
use crate::prune::probe::{CalibScan, ProbeError};

/// Calls `refit(det, l, sweeps)` for each unit `l` of `units` (in increasing order), while
/// every scan's forward pass is paused before unit `l`: `sweeps[i].input(det)` is unit `l`'s
/// input on `scans[i]`, computed with the units before it as already refitted, and what
/// `refit` changes in unit `l` is what the later units see. One forward pass per scan in
/// all, instead of one per unit and scan; every scan's paused state stays in memory.
pub(crate) fn refit_in_order(
    det: &mut Detector,
    scans: &[CalibScan],
    units: &[usize],
    ctl: &Control,
    mut refit: impl FnMut(&mut Detector, usize, &[Sweep]) -> Result<(), ProbeError>,
) -> Result<(), ProbeError> {
    let Some(&last) = units.last() else {
        return Ok(());
    };
    let started: Vec<Result<Sweep, ProbeError>> = scans
        .par_iter()
        .map(|s| Sweep::start(det, &s.points).map_err(model_error(s)))
        .collect();
    let mut sweeps = started.into_iter().collect::<Result<Vec<_>, _>>()?;
    for l in 0..=last {
        ctl.check()?;
        if units.contains(&l) {
            refit(det, l, &sweeps)?;
        }
        if l < last {
            let det = &*det;
            sweeps
                .par_iter_mut()
                .zip(scans)
                .try_for_each(|(s, scan)| s.advance(det).map_err(model_error(scan)))?;
        }
    }
    Ok(())
}

/// `f` of unit `l`'s input on every scan, in scan order (a scan whose pass has ended gives an
/// error), with the rulebook it runs with when it is a sparse conv.
pub(crate) fn map_inputs<T: Send>(
    det: &Detector,
    sweeps: &[Sweep],
    scans: &[CalibScan],
    f: impl Fn(&crate::nn::Tensor, Option<&crate::nn::sparse::Rulebook>) -> Result<T, ProbeError> + Sync,
) -> Result<Vec<T>, ProbeError> {
    let out: Vec<Result<T, ProbeError>> = sweeps
        .par_iter()
        .zip(scans)
        .map(|(s, scan)| {
            let x = s.input(det).map_err(model_error(scan))?.ok_or_else(|| {
                ProbeError::Settings(format!("scan {}: the forward pass has ended", scan.id))
            })?;
            f(&x, s.rulebook())
        })
        .collect();
    out.into_iter().collect()
}

pub(crate) fn model_error(scan: &CalibScan) -> impl Fn(DetectorError) -> ProbeError + '_ {
    |source| ProbeError::Model {
        scan: scan.id.clone(),
        source,
    }
}
