//! Statistics repair: re-estimate every BatchNorm's running mean and variance for the pruned
//! network, on the calibration scans.
//!
//! Pruning shifts and shrinks each layer's pre-normalisation output, but an eval-mode
//! BatchNorm still normalises with the dense network's statistics, so the error compounds
//! layer after layer. Units are repaired in network order, each on inputs from its already
//! repaired upstream, so each sees the distribution it will see at inference. Statistics are
//! pooled over every element the BatchNorm normalises (pixels of every scan; for PFN layers
//! every point row, padded slots included, as OpenPCDet's training-mode BatchNorm1d sees
//! them); the variance is unbiased, as PyTorch keeps `running_var`.

use crate::detect::layers::{Unit, UnitKind};
use crate::detect::{Detector, Sweep};
use crate::nn::Tensor;
use crate::progress::Control;
use crate::prune::probe::{CalibScan, ProbeError};

use super::walk;

/// Per-channel pooled moments of a unit's pre-normalisation output.
#[derive(Clone, Debug)]
pub struct ChannelMoments {
    pub n: f64,
    pub sum: Vec<f64>,
    pub sum_sq: Vec<f64>,
}

impl ChannelMoments {
    pub fn new(c: usize) -> Self {
        ChannelMoments {
            n: 0.0,
            sum: vec![0.0; c],
            sum_sq: vec![0.0; c],
        }
    }

    /// Adds a unit output: `rows x C` for a linear unit, `[C, H, W]` otherwise.
    pub fn add(&mut self, kind: UnitKind, z: &Tensor) {
        let c = self.sum.len();
        if c == 0 || z.data.is_empty() {
            return;
        }
        match kind {
            UnitKind::Linear | UnitKind::SparseConv(_) => {
                for row in z.data.chunks_exact(c) {
                    for (i, &v) in row.iter().enumerate() {
                        self.sum[i] += v as f64;
                        self.sum_sq[i] += v as f64 * v as f64;
                    }
                }
                self.n += (z.data.len() / c) as f64;
            }
            _ => {
                let plane = z.data.len() / c;
                for (i, p) in z.data.chunks_exact(plane).enumerate() {
                    let (s, ss) = p.iter().fold((0f64, 0f64), |(s, ss), &v| {
                        (s + v as f64, ss + v as f64 * v as f64)
                    });
                    self.sum[i] += s;
                    self.sum_sq[i] += ss;
                }
                self.n += plane as f64;
            }
        }
    }

    /// Adds the moments accumulated in `other`.
    pub fn merge(&mut self, other: &ChannelMoments) {
        self.n += other.n;
        for (a, b) in self.sum.iter_mut().zip(&other.sum) {
            *a += b;
        }
        for (a, b) in self.sum_sq.iter_mut().zip(&other.sum_sq) {
            *a += b;
        }
    }

    /// `(mean, unbiased variance)` per channel; `None` when nothing was seen.
    pub fn mean_var(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        if self.n < 2.0 {
            return None;
        }
        let n = self.n;
        let mean: Vec<f64> = self.sum.iter().map(|s| s / n).collect();
        let var = self
            .sum_sq
            .iter()
            .zip(&mean)
            .map(|(ss, m)| ((ss / n - m * m).max(0.0) * n / (n - 1.0)) as f32)
            .collect();
        Some((mean.iter().map(|&m| m as f32).collect(), var))
    }
}

/// Sets unit `u`'s BatchNorm statistics (a unit without one is left as it is).
pub fn set_statistics(u: &mut Unit, mean: Vec<f32>, var: Vec<f32>) -> Result<(), ProbeError> {
    let Some(bn) = &u.bn else {
        return Ok(());
    };
    let mut bn = bn.bn.clone();
    bn.mean = mean;
    bn.var = var;
    u.set_params(u.weight.clone(), u.bias.clone(), Some(bn))
        .map_err(|e| ProbeError::Settings(e.to_string()))
}

/// What one unit's repair changed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StatsChange {
    pub unit: String,
    /// Mean over channels of |new mean - old mean| / sqrt(old var + eps).
    pub mean_shift: f64,
    /// Mean over channels of new var / old var.
    pub var_ratio: f64,
}

/// Re-estimates the statistics of every BatchNorm of `det` from unit `first` on (the units
/// before it see the dense network's inputs, so their statistics are already right), in one
/// forward pass per scan.
pub fn repair_statistics(
    det: &mut Detector,
    scans: &[CalibScan],
    first: usize,
    ctl: &Control,
) -> Result<Vec<StatsChange>, ProbeError> {
    if scans.is_empty() {
        return Err(ProbeError::NoScans);
    }
    let todo: Vec<usize> = det
        .units()
        .iter()
        .enumerate()
        .filter(|(i, u)| *i >= first && u.bn.is_some())
        .map(|(i, _)| i)
        .collect();
    let mut changes = Vec::with_capacity(todo.len());
    walk::refit_in_order(det, scans, &todo, ctl, |det, l, sweeps| {
        let m = output_moments(det, l, sweeps, scans)?;
        let unit = det.units()[l];
        let name = unit.weight_name();
        if let Some((mean, var)) = m.mean_var() {
            let change = compare(unit, &mean, &var);
            set_statistics(det.units_mut()[l], mean, var)?;
            changes.push(change);
        }
        let step = todo.iter().position(|&u| u == l).map_or(0, |p| p + 1);
        (ctl.on_step)(step, todo.len(), &format!("statistics of {name}"));
        Ok(())
    })?;
    Ok(changes)
}

/// The moments of unit `l`'s pre-normalisation output on every scan (`sweeps` paused before
/// unit `l`, see [`walk::refit_in_order`]), computed per scan in parallel and summed in scan
/// order (deterministic).
pub(crate) fn output_moments(
    det: &Detector,
    l: usize,
    sweeps: &[Sweep],
    scans: &[CalibScan],
) -> Result<ChannelMoments, ProbeError> {
    let unit = det.units()[l];
    let linear = unit.linear_part().map_err(settings)?;
    let c = unit.out_channels();
    let per_scan = walk::map_inputs(det, sweeps, scans, |x, rb| {
        let z = match rb {
            // Active output sites x Cout: BatchNorm1d over the sites, as spconv's blocks.
            Some(rb) => {
                let z = linear.forward_sparse(&x.data, rb).map_err(settings)?;
                Tensor::from_vec(&[rb.out.len(), c], z)
            }
            None => linear.forward_input(x).map_err(settings)?,
        };
        let mut m = ChannelMoments::new(c);
        m.add(unit.kind, &z);
        Ok(m)
    })?;
    let mut m = ChannelMoments::new(c);
    for p in &per_scan {
        m.merge(p);
    }
    Ok(m)
}

fn compare(u: &Unit, mean: &[f32], var: &[f32]) -> StatsChange {
    let (mut shift, mut ratio) = (0.0, 0.0);
    let c = mean.len().max(1) as f64;
    if let Some(bn) = &u.bn {
        for i in 0..mean.len() {
            let sd = (bn.bn.var[i] as f64 + bn.bn.eps as f64).sqrt();
            shift += (mean[i] as f64 - bn.bn.mean[i] as f64).abs() / sd;
            ratio += (var[i] as f64 + bn.bn.eps as f64) / (bn.bn.var[i] as f64 + bn.bn.eps as f64);
        }
    }
    StatsChange {
        unit: u.weight_name(),
        mean_shift: shift / c,
        var_ratio: ratio / c,
    }
}

pub(crate) fn settings(e: impl std::fmt::Display) -> ProbeError {
    ProbeError::Settings(e.to_string())
}
