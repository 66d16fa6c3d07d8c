//! Measured distortion (DESIGN.md, "The method", 4): prune, re-run the calibration scans,
//! and compute D exactly against the dense outputs. Slow but true; it validates the
//! predicted curves (per layer) and the additivity assumption (whole allocations).

use rayon::prelude::*;

use crate::detect::{Detector, RawOutputs};
use crate::nn::Tensor;

use super::alloc::Solution;
use super::curves::{Additivity, Curves, LayerFidelity, Measured, OutputNorm, interpolate};
use super::distortion::{self, ConfidenceMap, Weighting};
use super::probe::{CalibScan, ProbeError};
use super::{Group, Lambdas, rank};
use crate::progress::Control;
use crate::prune::recover::stats::repair_statistics as repair_statistics_from;

/// The dense model's raw outputs on every calibration scan, what D compares, and the
/// normalisation.
pub struct DenseReference {
    outputs: Vec<RawOutputs>,
    weighting: Weighting,
    norms: Vec<OutputNorm>,
}

impl DenseReference {
    pub fn compute(
        det: &Detector,
        scans: &[CalibScan],
        weighting: Weighting,
        norms: Vec<OutputNorm>,
        ctl: &Control,
    ) -> Result<Self, ProbeError> {
        ctl.check()?;
        // Scans in parallel (a demo-sized pass leaves cores idle), kept in scan order.
        let outputs: Vec<Result<RawOutputs, ProbeError>> = scans
            .par_iter()
            .map(|scan| {
                ctl.check()?;
                Ok(run(det, scan)?.raw)
            })
            .collect();
        let outputs = outputs.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(DenseReference {
            outputs,
            weighting,
            norms,
        })
    }

    /// Exact `(confidence, locality)` distortion of `det` (e.g. a pruned copy) against the
    /// dense outputs: per tensor [`distortion::tensor_distortion`], summed per group, mean
    /// over scans.
    pub fn distortion(
        &self,
        det: &Detector,
        scans: &[CalibScan],
        ctl: &Control,
    ) -> Result<(f64, f64), ProbeError> {
        ctl.check()?;
        // Scans in parallel; summed in scan order (deterministic).
        let per_scan: Vec<Result<(f64, f64), ProbeError>> = scans
            .par_iter()
            .enumerate()
            .take(self.outputs.len())
            .map(|(i, scan)| {
                ctl.check()?;
                let out = run(det, scan)?;
                Ok(self.scan_distortion(i, &out.raw, None))
            })
            .collect();
        let mut d = (0.0, 0.0);
        for r in per_scan {
            let (c, o) = r?;
            d = (d.0 + c, d.1 + o);
        }
        let n = scans.len().max(1) as f64;
        Ok((d.0 / n, d.1 / n))
    }

    /// The dense model's BEV confidence on each scan (`None` for a head layout without
    /// one).
    pub fn confidence_maps(&self) -> Option<Vec<ConfidenceMap>> {
        self.outputs.iter().map(ConfidenceMap::of).collect()
    }

    /// Number of scans the reference holds.
    pub fn len(&self) -> usize {
        self.outputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// `(confidence, locality)` distortion of scan `i`'s outputs `raw` against the dense
    /// ones; with `grad = Some(lambdas)`, also `dD/d(raw)` of `lambdas.combine(c, l)`.
    fn scan_distortion(
        &self,
        i: usize,
        raw: &RawOutputs,
        grad: Option<(Lambdas, &mut RawOutputs)>,
    ) -> (f64, f64) {
        let dense = &self.outputs[i];
        let mut d = (0.0, 0.0);
        // Weights come from the dense outputs (where the dense model sees objects).
        let weights = distortion::tensor_weights(dense, self.weighting);
        let mut grad = grad;
        for (r, tw) in dense.outputs.iter().zip(&weights) {
            let (Some(norm), Some(t)) = (
                self.norms.iter().find(|n| n.output == r.name),
                raw.get(&r.name),
            ) else {
                continue;
            };
            let v = distortion::tensor_distortion(&t.data, &r.tensor.data, tw, norm);
            let lambda = match norm.group {
                Group::Confidence => {
                    d.0 += v;
                    grad.as_ref().map(|g| g.0.confidence)
                }
                Group::Locality => {
                    d.1 += v;
                    grad.as_ref().map(|g| g.0.locality)
                }
            };
            if let (Some((_, out)), Some(lambda)) = (grad.as_mut(), lambda) {
                let mut g = distortion::tensor_distortion_grad(&t.data, &r.tensor.data, tw, norm);
                for v in &mut g {
                    *v *= lambda as f32;
                }
                out.outputs.push(r.like(Tensor::from_vec(&t.shape, g)));
            }
        }
        d
    }

    /// Scan `i`'s `(confidence, locality)` distortion and the gradient of `lambdas.combine`
    /// of it with respect to the raw outputs (the backward pass's input).
    pub fn scan_gradient(
        &self,
        i: usize,
        raw: &RawOutputs,
        lambdas: Lambdas,
    ) -> ((f64, f64), RawOutputs) {
        let mut g = RawOutputs::default();
        let d = self.scan_distortion(i, raw, Some((lambdas, &mut g)));
        (d, g)
    }
}

fn run(det: &Detector, scan: &CalibScan) -> Result<crate::detect::ForwardOutput, ProbeError> {
    det.forward(&scan.points)
        .map_err(|source| ProbeError::Model {
            scan: scan.id.clone(),
            source,
        })
}

/// A model, its calibration scans, their dense outputs and the rank order of every unit:
/// everything a measurement needs.
pub struct Measurer<'a> {
    pub det: &'a Detector,
    pub scans: &'a [CalibScan],
    pub reference: DenseReference,
    /// Per unit (in [`Detector::units`] order), the prune order of its weights.
    pub orders: &'a [Vec<u32>],
}

impl Measurer<'_> {
    /// Measured curves of the units at `layers` (indices into [`Detector::units`]) at `levels`:
    /// each layer alone pruned in rank order, all scans re-run. With `repair_statistics`
    /// the BatchNorm statistics from that layer on are re-estimated on the scans first: the
    /// distortion of the model as statistics repair will leave it (recovery-aware curves).
    pub fn measured_curves(
        &self,
        layers: &[usize],
        levels: &[f64],
        repair_statistics: bool,
        ctl: &Control,
    ) -> Result<Vec<Measured>, ProbeError> {
        let (det, scans, reference, orders) = (self.det, self.scans, &self.reference, self.orders);
        let mut work = det.clone();
        let total = layers.len() * levels.len();
        let mut out = Vec::with_capacity(layers.len());
        let units = det.units();
        for (li, &l) in layers.iter().enumerate() {
            let dense = units[l].weight.clone();
            let mut m = Measured {
                sparsity: levels.to_vec(),
                after_statistics: repair_statistics,
                ..Default::default()
            };
            for (k, &s) in levels.iter().enumerate() {
                let pruned = rank::prune(&dense.data, &orders[l], s);
                set_weight(&mut work, l, Tensor::from_vec(&dense.shape, pruned))?;
                let (c, o) = if repair_statistics {
                    let mut repaired = work.clone();
                    repair_statistics_from(&mut repaired, scans, l, &ctl.silenced())?;
                    reference.distortion(&repaired, scans, ctl)?
                } else {
                    reference.distortion(&work, scans, ctl)?
                };
                m.confidence.push(c);
                m.locality.push(o);
                (ctl.on_step)(
                    li * levels.len() + k + 1,
                    total,
                    &format!("measured {} at {s:.2}", units[l].weight_name()),
                );
            }
            set_weight(&mut work, l, dense)?;
            out.push(m);
        }
        Ok(out)
    }

    /// One additivity check: an allocation's predicted sum (the allocator's own
    /// `solution.predicted`) against the distortion measured with all its layers pruned at
    /// once, and the sum of the measured curves at its sparsities when they cover them.
    pub fn additivity(
        &self,
        curves: &Curves,
        lambdas: Lambdas,
        flops_keep: f64,
        solution: &Solution,
        ctl: &Control,
    ) -> Result<Additivity, ProbeError> {
        let sparsity = &solution.sparsity;
        // Additivity applied to the measured curves: each layer's measured distortion,
        // interpolated between its measured levels (with 0 at sparsity 0).
        let measured_sum = curves
            .layers
            .iter()
            .zip(sparsity)
            .map(|(l, &s)| {
                if s <= 0.0 {
                    return Some(0.0);
                }
                let m = &l.measured;
                let levels = if m.sparsity.is_empty() {
                    &l.sparsity
                } else {
                    &m.sparsity
                };
                if levels.last().is_none_or(|&top| s > top + 1e-9) {
                    return None;
                }
                let mut xs = vec![0.0];
                let mut ys = vec![0.0];
                for (i, &x) in levels.iter().enumerate() {
                    if x > 0.0 {
                        xs.push(x);
                        ys.push(lambdas.combine(m.confidence[i], m.locality[i]));
                    }
                }
                Some(interpolate_clamped(&xs, &ys, s))
            })
            .sum::<Option<f64>>();
        let pruned = pruned_detector(self.det, sparsity, self.orders)?;
        let (c, o) = self.reference.distortion(&pruned, self.scans, ctl)?;
        Ok(Additivity {
            flops_keep,
            predicted: solution.predicted,
            measured_sum,
            measured: lambdas.combine(c, o),
        })
    }
}

fn set_weight(det: &mut Detector, unit: usize, w: Tensor) -> Result<(), ProbeError> {
    let mut units = det.units_mut();
    units[unit]
        .set_weight(w)
        .map_err(|e| ProbeError::Settings(e.to_string()))
}

/// A copy of `det` with every unit pruned at `sparsity[i]` (in `orders`' rank order).
pub fn pruned_detector(
    det: &Detector,
    sparsity: &[f64],
    orders: &[Vec<u32>],
) -> Result<Detector, ProbeError> {
    let mut work = det.clone();
    for (i, &s) in sparsity.iter().enumerate() {
        if s > 0.0 {
            let w = &det.units()[i].weight;
            let pruned = rank::prune(&w.data, &orders[i], s);
            set_weight(&mut work, i, Tensor::from_vec(&w.shape, pruned))?;
        }
    }
    Ok(work)
}

/// Spearman and Pearson correlation of the predicted (interpolated at the measured levels)
/// and measured curves, combined with `lambdas`, for every layer that has measurements.
pub fn layer_fidelity(curves: &Curves, lambdas: Lambdas) -> Vec<LayerFidelity> {
    curves
        .layers
        .iter()
        .filter(|l| !l.measured.is_empty())
        .map(|l| {
            let levels = if l.measured.sparsity.is_empty() {
                &l.sparsity
            } else {
                &l.measured.sparsity
            };
            let predicted = l.distortion.combined(lambdas);
            let p: Vec<f64> = levels
                .iter()
                .map(|&s| interpolate_clamped(&l.sparsity, &predicted, s))
                .collect();
            let m = l.measured.values().combined(lambdas);
            LayerFidelity {
                name: l.name.clone(),
                spearman: pearson(&ranks(&p), &ranks(&m)),
                pearson: pearson(&p, &m),
                levels: levels.len(),
            }
        })
        .collect()
}

/// [`interpolate`] held constant beyond the first and last level.
fn interpolate_clamped(xs: &[f64], ys: &[f64], x: f64) -> f64 {
    match (xs.first(), xs.last()) {
        (Some(&first), Some(&last)) => interpolate(xs, ys, x.clamp(first, last)).unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Ranks with ties averaged (for Spearman).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Pearson correlation; `None` when either side is constant or there are < 2 points.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len().min(b.len());
    if n < 2 {
        return None;
    }
    let ma = a[..n].iter().sum::<f64>() / n as f64;
    let mb = b[..n].iter().sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (x, y) = (a[i] - ma, b[i] - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}
