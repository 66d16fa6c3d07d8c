//! Predicted distortion curves from Gauss-Newton probes (DESIGN.md, "The method", 3).
//!
//! For a group `g` of raw head outputs, a Rademacher probe `v` scaled per element as
//! [`distortion::probe_scales`] says (for the raw distortion: `1 / sqrt(n_t * var_t)`) gives
//! `E_v[(v . J Delta)^2]` = the group's distortion to second order. One backward pass per
//! probe and scan gives `g = J^T v` for every layer at once; since pruning adds weights to
//! `Delta_l(s)` in rank order, `g . Delta_l(s)` at every level is a prefix sum of `-g_i w_i`
//! along the rank: O(n_l) per probe, and memory stays O(params) (no Jacobians are stored).

use std::sync::atomic::Ordering;

use rayon::prelude::*;

use crate::detect::{Detector, DetectorError, RawOutputs, ScanCost};
use crate::nn::Tensor;
use crate::progress::{Cancelled, Control};

use super::curves::{
    CURVES_FORMAT, Calibration, Curves, GroupValues, LayerCurve, ModelInfo, OutputNorm,
};
use super::distortion::{self, WeightedMoments, Weighting};
use super::{Group, Ranking, pruned_count, rank};

/// One calibration scan, ready for the model (`N x num_point_features`).
#[derive(Clone, Debug)]
pub struct CalibScan {
    /// Identity used in files and for the scan's probe seeds (e.g. the file name).
    pub id: String,
    pub points: Vec<f32>,
}

/// What to compute.
#[derive(Clone, Debug)]
pub struct CurveSettings {
    /// Rademacher probes per scan and group.
    pub probes: usize,
    /// Sparsity levels, ascending in [0, 1].
    pub levels: Vec<f64>,
    pub seed: u64,
    pub ranking: Ranking,
    /// What D compares ([`Weighting::Detection`] unless the paper's raw form is asked for).
    pub weighting: Weighting,
    /// Use these output variances instead of computing them (so shards can be merged).
    pub normalization: Option<Vec<OutputNorm>>,
}

impl CurveSettings {
    /// `n` evenly spaced levels from 0 to 1 inclusive.
    pub fn even_levels(n: usize) -> Vec<f64> {
        match n {
            0 => Vec::new(),
            1 => vec![0.0],
            _ => (0..n).map(|i| i as f64 / (n - 1) as f64).collect(),
        }
    }
}

impl Default for CurveSettings {
    fn default() -> Self {
        CurveSettings {
            probes: 4,
            levels: Self::even_levels(101),
            seed: 0,
            ranking: Ranking::Magnitude,
            weighting: Weighting::Detection,
            normalization: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cancelled")]
    Cancelled,
    #[error("no calibration scans")]
    NoScans,
    #[error("scan {scan}: {source}")]
    Model {
        scan: String,
        #[source]
        source: DetectorError,
    },
    #[error("{0}")]
    Settings(String),
}

impl From<Cancelled> for ProbeError {
    fn from(_: Cancelled) -> Self {
        ProbeError::Cancelled
    }
}

/// One prunable layer: a unit's weight in [`Detector::units`] order.
#[derive(Clone, Debug)]
pub struct PrunableLayer {
    pub name: String,
    pub shape: Vec<usize>,
    pub params: usize,
    /// Dense FLOPs per scan (mean over the calibration scans).
    pub flops: f64,
}

/// The layer table: every conv / transposed conv / linear / sparse conv weight, with its
/// FLOPs at `cost` (the calibration scans' mean PFN rows and rulebook pairs).
pub fn layer_table(det: &Detector, cost: &ScanCost) -> Vec<PrunableLayer> {
    det.units()
        .into_iter()
        .zip(det.unit_flops(cost))
        .map(|(u, flops)| PrunableLayer {
            name: u.weight_name(),
            shape: u.weight.shape.clone(),
            params: u.weight.numel(),
            flops,
        })
        .collect()
}

/// The normalisation of D: per output, the dense outputs' (weighted, see [`distortion`])
/// variance over the scans.
pub fn output_variances(
    det: &Detector,
    scans: &[CalibScan],
    weighting: Weighting,
    ctl: &Control,
) -> Result<Vec<OutputNorm>, ProbeError> {
    let mut moments: Vec<(String, Group, WeightedMoments)> = Vec::new();
    for (i, scan) in scans.iter().enumerate() {
        ctl.check()?;
        let out = det
            .forward(&scan.points)
            .map_err(|source| ProbeError::Model {
                scan: scan.id.clone(),
                source,
            })?;
        let weights = distortion::tensor_weights(&out.raw, weighting);
        for (o, tw) in out.raw.outputs.iter().zip(&weights) {
            let idx = match moments.iter().position(|(n, ..)| *n == o.name) {
                Some(i) => i,
                None => {
                    let group = Group::of(o.kind.role);
                    moments.push((o.name.clone(), group, WeightedMoments::default()));
                    moments.len() - 1
                }
            };
            moments[idx].2.add(&o.tensor, tw);
        }
        (ctl.on_step)(i + 1, scans.len(), &format!("dense pass: {}", scan.id));
    }
    Ok(moments
        .into_iter()
        .map(|(output, group, m)| m.norm(output, group))
        .collect())
}

/// Deterministic Rademacher signs from (seed, scan, group, probe, tensor): splitmix64.
struct Signs(u64);

impl Signs {
    fn new(parts: &[&[u8]]) -> Signs {
        // FNV-1a over the parts, then splitmix steps.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for p in parts {
            for &b in p.iter() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Signs(h)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `+-scales[i]`, one random sign per element.
    fn apply(&mut self, scales: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(scales.len());
        for chunk in scales.chunks(64) {
            let bits = self.next();
            out.extend(
                chunk
                    .iter()
                    .enumerate()
                    .map(|(b, &s)| if bits >> b & 1 == 1 { s } else { -s }),
            );
        }
        out
    }
}

/// The probe `v` of one group: Rademacher signs on the group's outputs, each element scaled
/// by [`distortion::probe_scales`]; other outputs are left out (zero).
fn probe_for(
    raw: &RawOutputs,
    weights: &[distortion::TensorWeights],
    norms: &[OutputNorm],
    group: Group,
    seed: u64,
    scan: &str,
    k: usize,
) -> RawOutputs {
    let mut outputs = Vec::new();
    for (o, tw) in raw.outputs.iter().zip(weights) {
        let Some(norm) = norms.iter().find(|n| n.output == o.name) else {
            continue;
        };
        if norm.group != group {
            continue;
        }
        let scales = distortion::probe_scales(&o.tensor.data, tw, norm);
        let mut signs = Signs::new(&[
            &seed.to_le_bytes(),
            scan.as_bytes(),
            group.name().as_bytes(),
            &(k as u64).to_le_bytes(),
            o.name.as_bytes(),
        ]);
        outputs.push(o.like(Tensor::from_vec(&o.tensor.shape, signs.apply(&scales))));
    }
    RawOutputs { outputs }
}

/// What [`predicted_curves`] computes.
pub struct Predicted {
    pub curves: Curves,
    /// Per unit (in [`Detector::units`] order), the prune order the curves assume.
    pub orders: Vec<Vec<u32>>,
    /// The Gauss-Newton diagonal per unit (saliency ranking only), needed to rebuild the
    /// orders when exporting masks.
    pub gn_diagonal: Option<Vec<Vec<f32>>>,
}

/// Predicted curves for every prunable layer (see the module docs).
pub fn predicted_curves(
    det: &Detector,
    scans: &[CalibScan],
    settings: &CurveSettings,
    model: ModelInfo,
    ctl: &Control,
) -> Result<Predicted, ProbeError> {
    if scans.is_empty() {
        return Err(ProbeError::NoScans);
    }
    if settings.probes == 0 {
        return Err(ProbeError::Settings(
            "at least one probe per scan is needed".into(),
        ));
    }
    if settings.levels.is_empty()
        || settings.levels.windows(2).any(|w| w[0] >= w[1])
        || settings.levels.iter().any(|s| !(0.0..=1.0).contains(s))
    {
        return Err(ProbeError::Settings(
            "sparsity levels must be ascending and within [0, 1]".into(),
        ));
    }
    let passes = if settings.ranking == Ranking::Saliency {
        2
    } else {
        1
    };
    let norm_steps = if settings.normalization.is_some() {
        0
    } else {
        scans.len()
    };
    let per_scan = 1 + Group::ALL.len() * settings.probes;
    let total = norm_steps + passes * scans.len() * per_scan;
    let step = std::sync::atomic::AtomicUsize::new(0);
    let tick = |what: &str| {
        let done = step.fetch_add(1, Ordering::Relaxed) + 1;
        (ctl.on_step)(done, total, what);
    };
    let norms = match &settings.normalization {
        Some(n) => n.clone(),
        None => {
            let inner = |_: usize, _: usize, what: &str| tick(what);
            output_variances(
                det,
                scans,
                settings.weighting,
                &Control {
                    cancel: ctl.cancel,
                    on_step: &inner,
                },
            )?
        }
    };
    let units = det.units();
    let weights: Vec<&[f32]> = units.iter().map(|u| u.weight.data.as_slice()).collect();

    // Saliency needs the Gauss-Newton diagonal before the rank is known: a first sweep
    // accumulates E[g_i^2] (lambda 1 for both groups), the second the curves, with the same
    // probes.
    let mut gn_diagonal = None;
    let orders: Vec<Vec<u32>> = match settings.ranking {
        Ranking::Magnitude => weights
            .par_iter()
            .map(|w| rank::magnitude_order(w))
            .collect(),
        Ranking::Saliency => {
            let mut diag: Vec<Vec<f64>> = weights.iter().map(|w| vec![0.0; w.len()]).collect();
            let mut costs = Vec::new();
            sweep(
                det,
                scans,
                settings,
                &norms,
                ctl,
                &tick,
                &mut costs,
                |_, grads| {
                    diag.par_iter_mut().zip(grads).for_each(|(d, g)| {
                        for (d, g) in d.iter_mut().zip(&g.weight.data) {
                            *d += (*g as f64) * (*g as f64);
                        }
                    });
                },
            )?;
            let count = (scans.len() * settings.probes * Group::ALL.len()) as f64;
            let diag: Vec<Vec<f32>> = diag
                .iter()
                .map(|d| d.iter().map(|&v| (v / count) as f32).collect())
                .collect();
            let orders = weights
                .par_iter()
                .zip(&diag)
                .map(|(w, d)| rank::saliency_order(w, d))
                .collect();
            gn_diagonal = Some(diag);
            orders
        }
    };

    let levels = &settings.levels;
    let counts: Vec<Vec<usize>> = weights
        .iter()
        .map(|w| levels.iter().map(|&s| pruned_count(s, w.len())).collect())
        .collect();
    let mut sums: Vec<GroupValues> = weights
        .iter()
        .map(|_| GroupValues::zeros(levels.len()))
        .collect();
    let mut costs = Vec::with_capacity(scans.len());
    sweep(
        det,
        scans,
        settings,
        &norms,
        ctl,
        &tick,
        &mut costs,
        |group, grads| {
            sums.par_iter_mut()
                .zip(grads)
                .zip(weights.par_iter().zip(&orders).zip(&counts))
                .for_each(|((sum, g), ((w, order), counts))| {
                    let values = prefix_at(&g.weight.data, w, order, counts);
                    for (s, v) in sum.get_mut(group).iter_mut().zip(values) {
                        *s += v * v;
                    }
                });
        },
    )?;
    let table = layer_table(det, &ScanCost::mean(&costs));
    let count = (scans.len() * settings.probes) as f64;
    let layers = table
        .into_iter()
        .zip(sums)
        .map(|(l, sum)| LayerCurve {
            distortion: GroupValues {
                confidence: sum.confidence.iter().map(|v| v / count).collect(),
                locality: sum.locality.iter().map(|v| v / count).collect(),
            },
            sum: Some(sum),
            name: l.name,
            params: l.params,
            flops: l.flops,
            shape: l.shape,
            sparsity: levels.clone(),
            measured: Default::default(),
        })
        .collect();
    let curves = Curves {
        format: CURVES_FORMAT.into(),
        model,
        calibration: Calibration {
            scans: scans.len(),
            probes: settings.probes,
            scan_ids: scans.iter().map(|s| s.id.clone()).collect(),
            ranking: settings.ranking,
            distortion: settings.weighting,
            normalization: norms,
            seed: settings.seed,
        },
        layers,
        fidelity: None,
    };
    Ok(Predicted {
        curves,
        orders,
        gn_diagonal,
    })
}

/// `sum_{j < c} g[order[j]] * w[order[j]]` at each prune count `c` (in f64): `-g . Delta`.
fn prefix_at(g: &[f32], w: &[f32], order: &[u32], counts: &[usize]) -> Vec<f64> {
    let mut out = Vec::with_capacity(counts.len());
    let mut acc = 0f64;
    let mut j = 0usize;
    for &c in counts {
        while j < c {
            let i = order[j] as usize;
            acc += g[i] as f64 * w[i] as f64;
            j += 1;
        }
        out.push(acc);
    }
    out
}

/// One pass over the scans: a taped forward per scan (adding its cost to `costs`), then
/// one backward per group and probe; `each` sees every probe's unit gradients.
#[allow(clippy::too_many_arguments)]
fn sweep(
    det: &Detector,
    scans: &[CalibScan],
    settings: &CurveSettings,
    norms: &[OutputNorm],
    ctl: &Control,
    tick: &(dyn Fn(&str) + Sync),
    costs: &mut Vec<ScanCost>,
    mut each: impl FnMut(Group, &[crate::detect::UnitGrads]),
) -> Result<(), ProbeError> {
    for scan in scans {
        ctl.check()?;
        let model_err = |source| ProbeError::Model {
            scan: scan.id.clone(),
            source,
        };
        let taped = det.forward_taped(&scan.points).map_err(model_err)?;
        costs.push(ScanCost::of(&taped.out));
        tick(&format!("{}: forward", scan.id));
        let weights = distortion::tensor_weights(&taped.out.raw, settings.weighting);
        for group in Group::ALL {
            for k in 0..settings.probes {
                ctl.check()?;
                let v = probe_for(
                    &taped.out.raw,
                    &weights,
                    norms,
                    group,
                    settings.seed,
                    &scan.id,
                    k,
                );
                if v.outputs.is_empty() {
                    tick(&format!("{}: no {} outputs", scan.id, group.name()));
                    continue;
                }
                let grads = det.backward(&taped, &v).map_err(model_err)?;
                each(group, &grads);
                tick(&format!("{}: {} probe {}", scan.id, group.name(), k + 1));
            }
        }
    }
    Ok(())
}
