//! Layer-wise weight reconstruction (second order): keep each layer's mask and solve for the
//! surviving weights that best reproduce the dense layer's output, as OBC / SparseGPT do for
//! classifiers, on properly unfolded conv inputs.
//!
//! Row `w` of a unit (one output channel; for a transposed conv whose kernel equals its
//! stride, one output channel and kernel tap) computes `w . a_j` over input columns `a_j`
//! (im2col columns, PFN rows, input pixels). With `t` the dense row, the refit minimises
//! `sum_j (w . a_j - t . a_j)^2` over the kept entries `S` of the mask (OBC's target: the
//! dense layer on the unit's own inputs):
//!
//! `w_S = (H_SS + lambda I)^-1 (H t)_S`, `H = sum a a^T`,
//!
//! with `lambda = damp * mean(diag H)` (dampening, so too few columns never give NaN).
//! Units run in network order, each on the already reconstructed upstream (one forward pass
//! per scan for all units, see `walk`); a unit's bias (head convs) is refitted with it, and
//! its BatchNorm statistics follow from the same Gram matrix at no extra pass.
//!
//! Measured on the demo model (`docs/pruning-report.md`): every layer's output error falls
//! sharply, yet AP falls too: the fit is dominated by the background pixels, which are
//! almost all of them. Fitting to the dense layer on the dense network's inputs instead
//! (so that each layer also corrects its upstream's error) was measured worse still
//! (validation AP 54.5 against 61.8) and is not offered.

use rayon::prelude::*;

use crate::detect::Detector;
use crate::detect::layers::{Unit, UnitKind};
use crate::nn::Tensor;
use crate::nn::gram::Gram;
use crate::nn::sparse::Rulebook;
use crate::progress::Control;
use crate::prune::distortion::ConfidenceMap;
use crate::prune::probe::{CalibScan, ProbeError};

use super::stats::{self, settings};
use super::walk;

/// Reconstruction settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReconstructSettings {
    /// Dampening as a fraction of the mean diagonal of `H` (SparseGPT uses 0.01).
    pub damp: f64,
    /// Also re-estimate each refitted unit's BatchNorm statistics (statistics repair).
    pub repair_statistics: bool,
    /// How much each input column counts in the fit.
    pub columns: ColumnWeighting,
}

/// How far (in output cells of the head) an object's confidence reaches when weighting
/// columns: about a car's half-length on the demo model's grid.
pub const FOCUS_DILATE: usize = 4;

/// How much each input column counts in a unit's least-squares fit.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum ColumnWeighting {
    /// Every column (pixel, pillar point) the same: almost all of them are background.
    Uniform,
    /// A column at a BEV location counts `floor` plus the dense model's confidence within
    /// `dilate` output cells of it ([`ConfidenceMap::column_weights`]); PFN rows stay uniform.
    Confidence { floor: f32, dilate: usize },
}

impl ColumnWeighting {
    /// `--focus FLOOR`: confidence weighting with this floor, uniform for 0.
    pub fn focus(floor: f32) -> ColumnWeighting {
        if floor == 0.0 {
            ColumnWeighting::Uniform
        } else {
            ColumnWeighting::Confidence {
                floor,
                dilate: FOCUS_DILATE,
            }
        }
    }

    /// The floor `--focus` gives (0 for uniform).
    pub fn floor(self) -> f32 {
        match self {
            ColumnWeighting::Uniform => 0.0,
            ColumnWeighting::Confidence { floor, .. } => floor,
        }
    }
}

impl Default for ReconstructSettings {
    fn default() -> Self {
        ReconstructSettings {
            damp: 0.01,
            repair_statistics: true,
            // Chosen on validation scenes (seed 555, not the report's held-out set): at 2x,
            // `all` 77.00 -> 79.32 AP_BEV (dense 80.09); see docs/pruning-report.md.
            columns: ColumnWeighting::focus(0.01),
        }
    }
}

/// What the refit of one unit achieved, as relative output errors `sum (z - z_dense)^2 /
/// sum z_dense^2` of its linear part (before the BatchNorm) on the calibration inputs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerReconstruction {
    pub unit: String,
    /// With the masked dense weights (on the reconstructed upstream's inputs).
    pub error_before: f64,
    pub error_after: f64,
    /// Input columns seen and unknowns per row: fewer columns than unknowns is
    /// under-determined (the dampening decides).
    pub columns: f64,
    pub unknowns: usize,
    /// Rows whose system was not positive definite even after extra dampening (kept masked).
    pub failed_rows: usize,
    /// Why the unit was left as it is, when it was.
    pub skipped: Option<String>,
}

/// How a unit's weight splits into independent rows, and how its input becomes columns.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// `[Cout, K]` contiguous rows (conv `[Cout, Cin, k, k]`, linear `[Cout, Cin]`).
    Rows { cout: usize, k: usize },
    /// Transposed conv `[Cin, Cout, k, k]` with kernel == stride: row `(co, tap)` holds
    /// `W[ci, co, tap]` over `ci`.
    Taps {
        cin: usize,
        cout: usize,
        taps: usize,
    },
}

impl Layout {
    fn of(u: &Unit) -> Result<Layout, String> {
        let s = &u.weight.shape;
        match u.kind {
            UnitKind::Linear => Ok(Layout::Rows {
                cout: s[0],
                k: s[1],
            }),
            UnitKind::Conv { .. } => Ok(Layout::Rows {
                cout: s[0],
                k: s[1] * s[2] * s[3],
            }),
            UnitKind::ConvTranspose { stride } if s[2] == stride && s[3] == stride => {
                Ok(Layout::Taps {
                    cin: s[0],
                    cout: s[1],
                    taps: s[2] * s[3],
                })
            }
            UnitKind::ConvTranspose { stride } => Err(format!(
                "a transposed conv with kernel {}x{} and stride {stride} (overlapping taps) is not reconstructed",
                s[2], s[3]
            )),
            // `[Cout, kz, ky, kx, Cin]`: each output channel's row is contiguous.
            UnitKind::SparseConv(_) => Ok(Layout::Rows {
                cout: s[0],
                k: s[1..].iter().product(),
            }),
        }
    }

    /// Columns per row (before the bias).
    fn k(self) -> usize {
        match self {
            Layout::Rows { k, .. } => k,
            Layout::Taps { cin, .. } => cin,
        }
    }

    fn rows(self) -> usize {
        match self {
            Layout::Rows { cout, .. } => cout,
            Layout::Taps { cout, taps, .. } => cout * taps,
        }
    }

    /// Flat weight index of element `i` of row `r`.
    fn index(self, r: usize, i: usize) -> usize {
        match self {
            Layout::Rows { k, .. } => r * k + i,
            Layout::Taps { cout, taps, .. } => {
                let (co, tap) = (r / taps, r % taps);
                (i * cout + co) * taps + tap
            }
        }
    }

    /// Output channel of row `r`.
    fn channel(self, r: usize) -> usize {
        match self {
            Layout::Rows { .. } => r,
            Layout::Taps { taps, .. } => r / taps,
        }
    }
}

/// Adds unit `u`'s input columns on one scan (`a`: its input; `rb`: a sparse conv's
/// rulebook) to `g`, each counting its weight in `weights` (one per column) when given.
fn add_columns(
    u: &Unit,
    g: &mut Gram,
    a: &Tensor,
    rb: Option<&Rulebook>,
    weights: Option<&[f32]>,
) -> Result<(), ProbeError> {
    let k = u.weight.shape.get(2).copied().unwrap_or(1);
    match u.kind {
        UnitKind::Linear => g.add_rows(a),
        UnitKind::Conv { stride, padding } => g.add_conv(a, (k, k), stride, padding, weights),
        UnitKind::ConvTranspose { .. } => g.add_pixels(a, weights),
        UnitKind::SparseConv(_) => match rb {
            Some(rb) => g.add_sparse(a, rb),
            None => Err(crate::nn::NnError::Invalid {
                op: "reconstruction",
                msg: format!("{}: no rulebook for a sparse conv", u.weight_name()),
            }),
        },
    }
    .map_err(settings)
}

/// The weights of unit `u`'s input columns on a scan whose dense confidence is `map`
/// (`None`: uniform). A conv's columns are its output pixels, a transposed conv's its
/// input pixels.
fn column_weights(
    u: &Unit,
    a: &Tensor,
    map: Option<&ConfidenceMap>,
    weighting: ColumnWeighting,
) -> Option<Vec<f32>> {
    let (ColumnWeighting::Confidence { floor, dilate }, Some(map)) = (weighting, map) else {
        return None;
    };
    let [_, h, w] = a.shape[..] else {
        return None;
    };
    let k = u.weight.shape.get(2).copied().unwrap_or(1);
    let (gh, gw) = match u.kind {
        UnitKind::Linear | UnitKind::SparseConv(_) => return None,
        UnitKind::Conv { stride, padding } => {
            let out = |n: usize| {
                (n + 2 * padding)
                    .checked_sub(k)
                    .map(|v| v / stride.max(1) + 1)
            };
            (out(h)?, out(w)?)
        }
        UnitKind::ConvTranspose { .. } => (h, w),
    };
    Some(map.column_weights(gh, gw, floor, dilate))
}

/// Refits the units `units` of `pruned` (in network order; the range is clamped to the
/// network) against `dense`;
/// `masks[i]` is unit i's weight mask (`None`: all kept). `pruned` must already hold the
/// masked weights. Returns one record per unit.
#[allow(clippy::too_many_arguments)] // each is one input of the fit; a struct would only rename them
pub fn reconstruct(
    pruned: &mut Detector,
    dense: &Detector,
    masks: &[Option<Vec<u8>>],
    scans: &[CalibScan],
    confidence: Option<&[ConfidenceMap]>,
    units: std::ops::Range<usize>,
    cfg: &ReconstructSettings,
    ctl: &Control,
) -> Result<Vec<LayerReconstruction>, ProbeError> {
    if scans.is_empty() {
        return Err(ProbeError::NoScans);
    }
    let confidence = confidence.filter(|_| cfg.columns != ColumnWeighting::Uniform);
    if confidence.is_some_and(|c| c.len() != scans.len()) {
        return Err(settings(
            "one confidence map per calibration scan is needed",
        ));
    }
    let units = units.start..units.end.min(pruned.units().len());
    let todo: Vec<usize> = units.clone().collect();
    let mut out = Vec::new();
    walk::refit_in_order(pruned, scans, &todo, ctl, |pruned, l, sweeps| {
        let unit = pruned.units()[l].clone();
        let dense_unit = &dense.units()[l];
        let layout = match Layout::of(&unit) {
            Ok(layout) => layout,
            Err(why) => {
                // Not refitted, but its statistics follow its refitted upstream all the same.
                if cfg.repair_statistics && unit.bn.is_some() {
                    let moments = stats::output_moments(pruned, l, sweeps, scans)?;
                    if let Some((mean, var)) = moments.mean_var() {
                        stats::set_statistics(pruned.units_mut()[l], mean, var)?;
                    }
                }
                out.push(skipped(&unit, why));
                return Ok(());
            }
        };
        let with_bias = unit.bias.is_some() && matches!(layout, Layout::Rows { .. });
        let mut gram = Gram::new(layout.k());
        // Scan by scan (each Gram update is parallel inside), in scan order.
        for (i, (sweep, scan)) in sweeps.iter().zip(scans).enumerate() {
            ctl.check()?;
            let x = sweep
                .input(pruned)
                .map_err(walk::model_error(scan))?
                .ok_or_else(|| settings(format!("scan {}: the forward pass has ended", scan.id)))?;
            let map = confidence.map(|c| &c[i]);
            let weights = column_weights(&unit, &x, map, cfg.columns);
            add_columns(&unit, &mut gram, &x, sweep.rulebook(), weights.as_deref())?;
        }
        let mask = masks.get(l).and_then(Option::as_ref);
        let Some(system) = System::new(&gram, with_bias, cfg.damp) else {
            out.push(skipped(
                &unit,
                "its inputs are all zero on the calibration scans".into(),
            ));
            return Ok(());
        };
        let fit = system.solve_unit(&unit, dense_unit, layout, mask);
        let mut weight = unit.weight.clone();
        weight.data = fit.weight;
        let bias = if with_bias {
            fit.bias
        } else {
            unit.bias.clone()
        };
        let bn = unit.bn.as_ref().map(|b| b.bn.clone());
        pruned.units_mut()[l]
            .set_params(weight, bias, bn)
            .map_err(settings)?;
        // The BatchNorm statistics of the refitted unit, from its outputs on the calibration
        // inputs (plain moments, whatever the fit's column weights).
        if cfg.repair_statistics && unit.bn.is_some() {
            let moments = stats::output_moments(pruned, l, sweeps, scans)?;
            if let Some((mean, var)) = moments.mean_var() {
                stats::set_statistics(pruned.units_mut()[l], mean, var)?;
            }
        }
        let e = fit.dense_energy.max(1e-30);
        out.push(LayerReconstruction {
            unit: unit.weight_name(),
            error_before: (fit.objective_before + fit.dense_energy).max(0.0) / e,
            error_after: (fit.objective_after + fit.dense_energy).max(0.0) / e,
            columns: gram.columns,
            unknowns: system.dim,
            failed_rows: fit.failed_rows,
            skipped: None,
        });
        (ctl.on_step)(
            l + 1 - units.start,
            units.len(),
            &format!("reconstructed {}", unit.weight_name()),
        );
        Ok(())
    })?;
    Ok(out)
}

fn skipped(u: &Unit, why: String) -> LayerReconstruction {
    LayerReconstruction {
        unit: u.weight_name(),
        error_before: f64::NAN,
        error_after: f64::NAN,
        columns: 0.0,
        unknowns: 0,
        failed_rows: 0,
        skipped: Some(why),
    }
}

/// The least-squares system of one unit: `H` with the bias as an extra all-ones
/// input when it is refitted (`dim = k + 1`), and the dampening.
struct System {
    dim: usize,
    k: usize,
    h: Vec<f64>,
    lambda: f64,
}

/// A unit's refit rows and the change in the least-squares objective (without its constant
/// `dense_energy`: `sum z_dense^2` of the linear part without a bias it does not refit).
struct UnitFit {
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    objective_before: f64,
    objective_after: f64,
    dense_energy: f64,
    failed_rows: usize,
}

impl System {
    fn new(g: &Gram, with_bias: bool, damp: f64) -> Option<System> {
        let k = g.k;
        let dim = k + usize::from(with_bias);
        let mut h = vec![0f64; dim * dim];
        for i in 0..k {
            h[i * dim..i * dim + k].copy_from_slice(&g.aa[i * k..(i + 1) * k]);
        }
        if with_bias {
            for i in 0..k {
                h[i * dim + k] = g.sum[i];
                h[k * dim + i] = g.sum[i];
            }
            h[k * dim + k] = g.n;
        }
        let mean_diag = (0..k).map(|i| g.aa[i * k + i]).sum::<f64>() / k.max(1) as f64;
        if mean_diag.is_nan() || mean_diag <= 0.0 || mean_diag.is_infinite() {
            return None;
        }
        Some(System {
            dim,
            k,
            h,
            lambda: damp.max(1e-8) * mean_diag,
        })
    }

    /// Solves every row of `unit` (parallel over rows).
    fn solve_unit(
        &self,
        unit: &Unit,
        dense: &Unit,
        layout: Layout,
        mask: Option<&Vec<u8>>,
    ) -> UnitFit {
        let k = self.k;
        let with_bias = self.dim > k;
        let rows: Vec<(RowFit, f64)> = (0..layout.rows())
            .into_par_iter()
            .map(|r| {
                let mut target: Vec<f64> = (0..k)
                    .map(|i| dense.weight.data[layout.index(r, i)] as f64)
                    .collect();
                let mut start: Vec<f64> = (0..k)
                    .map(|i| unit.weight.data[layout.index(r, i)] as f64)
                    .collect();
                let mut keep: Vec<bool> = (0..k)
                    .map(|i| mask.is_none_or(|m| m[layout.index(r, i)] != 0))
                    .collect();
                if with_bias {
                    let ch = layout.channel(r);
                    target.push(dense.bias.as_ref().map_or(0.0, |b| b[ch] as f64));
                    start.push(unit.bias.as_ref().map_or(0.0, |b| b[ch] as f64));
                    keep.push(true);
                }
                // The dense row's output energy `t^T H t`: the objective's constant.
                (
                    self.solve_row(&target, &start, &keep),
                    quad(&self.h, &target),
                )
            })
            .collect();
        let mut weight = unit.weight.data.clone();
        let mut bias = unit.bias.clone();
        let mut fit = UnitFit {
            weight: Vec::new(),
            bias: None,
            objective_before: 0.0,
            objective_after: 0.0,
            dense_energy: 0.0,
            failed_rows: 0,
        };
        for (r, (row, energy)) in rows.iter().enumerate() {
            for i in 0..k {
                weight[layout.index(r, i)] = row.w[i] as f32;
            }
            if let (true, Some(b)) = (with_bias, bias.as_mut()) {
                b[layout.channel(r)] = row.w[k] as f32;
            }
            fit.objective_before += row.before;
            fit.objective_after += row.after;
            fit.dense_energy += energy;
            fit.failed_rows += usize::from(row.failed);
        }
        fit.weight = weight;
        fit.bias = bias;
        fit
    }

    /// `min_w w^T H w - 2 w . (H t)` over the kept entries, the others 0. Falls back to the
    /// start (the masked dense row) when the system cannot be factored or does not improve.
    fn solve_row(&self, target: &[f64], start: &[f64], keep: &[bool]) -> RowFit {
        let d = self.dim;
        let s: Vec<usize> = (0..d).filter(|&i| keep[i]).collect();
        // g = H t restricted to S.
        let g: Vec<f64> = s
            .iter()
            .map(|&i| {
                let row = &self.h[i * d..(i + 1) * d];
                row.iter().zip(target).map(|(a, b)| a * b).sum()
            })
            .collect();
        let hs = |lambda: f64| {
            let m = s.len();
            let mut a = vec![0f64; m * m];
            for (p, &i) in s.iter().enumerate() {
                for (q, &j) in s.iter().enumerate() {
                    a[p * m + q] = self.h[i * d + j];
                }
                a[p * m + p] += lambda;
            }
            a
        };
        let start_s: Vec<f64> = s.iter().map(|&i| start[i]).collect();
        let exact = hs(0.0);
        let objective = |w: &[f64]| quad(&exact, w) - 2.0 * dot(w, &g);
        let before = objective(&start_s);
        let keep_start = |failed| {
            let mut w = vec![0f64; d];
            for &i in &s {
                w[i] = start[i];
            }
            RowFit {
                w,
                before,
                after: before,
                failed,
            }
        };
        // More dampening only when the system cannot be factored.
        let mut lambda = self.lambda;
        let solved = (0..4).find_map(|_| {
            let x = cholesky_solve(hs(lambda), &g);
            lambda *= 10.0;
            x
        });
        let Some(w_s) = solved else {
            return keep_start(true);
        };
        let after = objective(&w_s);
        if !(after.is_finite() && after <= before) {
            return keep_start(false);
        }
        let mut w = vec![0f64; d];
        for (&i, v) in s.iter().zip(&w_s) {
            w[i] = *v;
        }
        RowFit {
            w,
            before,
            after,
            failed: false,
        }
    }
}

struct RowFit {
    w: Vec<f64>,
    before: f64,
    after: f64,
    failed: bool,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `w^T A w` for a square row-major `A` of `w.len()` rows.
fn quad(a: &[f64], w: &[f64]) -> f64 {
    let m = w.len();
    (0..m).map(|i| w[i] * dot(&a[i * m..(i + 1) * m], w)).sum()
}

/// Solves `A x = b` for a symmetric positive definite `A` (row-major, consumed) by Cholesky;
/// `None` when `A` is not positive definite.
pub(crate) fn cholesky_solve(mut a: Vec<f64>, b: &[f64]) -> Option<Vec<f64>> {
    let m = b.len();
    // In place: the lower triangle becomes L (row i holds L[i][0..=i]).
    for j in 0..m {
        let lj: Vec<f64> = a[j * m..j * m + j].to_vec();
        let s = a[j * m + j] - dot(&lj, &lj);
        if s.is_nan() || s <= 0.0 || s.is_infinite() {
            return None;
        }
        let s = s.sqrt();
        a[j * m + j] = s;
        for i in j + 1..m {
            let row_i = &mut a[i * m..(i + 1) * m];
            row_i[j] = (row_i[j] - dot(&row_i[..j], &lj)) / s;
        }
    }
    // L y = b, then L^T x = y.
    let mut y = b.to_vec();
    for i in 0..m {
        let row = &a[i * m..i * m + i];
        y[i] = (y[i] - dot(row, &y[..i])) / a[i * m + i];
    }
    for i in (0..m).rev() {
        let mut v = y[i];
        for r in i + 1..m {
            v -= a[r * m + i] * y[r];
        }
        y[i] = v / a[i * m + i];
    }
    y.iter().all(|v| v.is_finite()).then_some(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn cholesky_solves_a_small_system() {
        // A = [[4, 2, 0], [2, 3, 1], [0, 1, 2]], x = [1, -1, 2].
        let a = vec![4.0, 2.0, 0.0, 2.0, 3.0, 1.0, 0.0, 1.0, 2.0];
        let x = [1.0, -1.0, 2.0];
        let b: Vec<f64> = (0..3).map(|i| dot(&a[i * 3..i * 3 + 3], &x)).collect();
        let got = cholesky_solve(a, &b).unwrap();
        for (g, w) in got.iter().zip(x) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        assert!(cholesky_solve(vec![1.0, 2.0, 2.0, 1.0], &[1.0, 1.0]).is_none());
    }

    /// Solves the normal equations of an explicit design matrix by Gaussian elimination.
    fn least_squares(x: &[Vec<f64>], y: &[f64]) -> Vec<f64> {
        let m = x[0].len();
        let mut a = vec![vec![0f64; m + 1]; m];
        for (row, &t) in x.iter().zip(y) {
            for i in 0..m {
                for j in 0..m {
                    a[i][j] += row[i] * row[j];
                }
                a[i][m] += row[i] * t;
            }
        }
        for c in 0..m {
            let p = (c..m)
                .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
                .unwrap();
            a.swap(c, p);
            for r in 0..m {
                if r != c {
                    let f = a[r][c] / a[c][c];
                    let pivot = a[c].clone();
                    for (v, p) in a[r][c..].iter_mut().zip(&pivot[c..]) {
                        *v -= f * p;
                    }
                }
            }
        }
        (0..m).map(|i| a[i][m] / a[i][i]).collect()
    }

    /// The masked refit with a bias is the closed-form least-squares fit of the kept inputs
    /// (plus a constant) to the dense row on the same inputs.
    #[test]
    fn row_refit_is_the_closed_form_least_squares_solution() {
        let (n, k) = (300, 5);
        let a = Tensor::from_vec(&[n, k], Rng::new(1).values(n * k, -0.5, 0.5));
        let mut g = Gram::new(k);
        g.add_rows(&a).unwrap();
        let system = System::new(&g, true, 1e-12).unwrap();
        let target = [0.7, -1.2, 0.4, 2.0, -0.5, 0.25]; // 5 weights + bias
        let keep = [true, false, true, true, false, true];
        let start = [0.7, 0.0, 0.4, 2.0, 0.0, 0.25];
        let fit = system.solve_row(&target, &start, &keep);
        assert!(!fit.failed && fit.after <= fit.before);
        // Explicit: columns 0, 2, 3 and a constant; targets t . a_j + t_bias.
        let kept = [0, 2, 3];
        let design: Vec<Vec<f64>> = (0..n)
            .map(|j| {
                let mut r: Vec<f64> = kept.iter().map(|&i| a.data[j * k + i] as f64).collect();
                r.push(1.0);
                r
            })
            .collect();
        let y: Vec<f64> = (0..n)
            .map(|j| {
                (0..k)
                    .map(|i| target[i] * a.data[j * k + i] as f64)
                    .sum::<f64>()
                    + target[5]
            })
            .collect();
        let want = least_squares(&design, &y);
        let got = [fit.w[0], fit.w[2], fit.w[3], fit.w[5]];
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() < 1e-6 * (1.0 + w.abs()),
                "{got:?} vs {want:?}"
            );
        }
        assert_eq!((fit.w[1], fit.w[4]), (0.0, 0.0));
    }
}
