//! Label-free distillation: minimise the detection distortion between the pruned and the
//! dense network on the calibration scans with Adam, masks fixed.
//!
//! The loss is the same D the curves measure ([`DenseReference`]: scores after the sigmoid,
//! confidence-weighted box terms, per-component normalisation), so "accuracy" here needs no
//! labels: the dense model's outputs are the targets. Gradients come from the engine's own
//! vector-Jacobian products (eval mode: BatchNorm statistics stay fixed while gamma, beta,
//! weights and biases move). Pruned weights stay exactly zero: their gradients are masked
//! and the mask is applied after every step. The whole calibration loss is measured every
//! few steps; the best weights seen are kept, and a NaN or a clearly rising loss stops the
//! run early (said in the report).

use rayon::prelude::*;

use crate::detect::Detector;
use crate::detect::layers::UnitGrads;
use crate::nn::Tensor;
use crate::progress::Control;
use crate::prune::Lambdas;
use crate::prune::measure::DenseReference;
use crate::prune::probe::{CalibScan, ProbeError};
use crate::rng::Rng;

use super::stats::settings;

/// Distillation settings.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct DistillSettings {
    /// Adam steps.
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Scans per step.
    pub batch: usize,
    /// Seed of the scan order.
    pub seed: u64,
    /// Weights of the confidence and locality groups in the loss.
    #[serde(skip)]
    pub lambdas: Lambdas,
    /// Measure the whole calibration loss every this many steps (0: steps / 10).
    pub eval_every: usize,
}

impl Default for DistillSettings {
    fn default() -> Self {
        DistillSettings {
            steps: 200,
            lr: 1e-4,
            batch: 4,
            seed: 0,
            lambdas: Lambdas::default(),
            eval_every: 0,
        }
    }
}

/// How a distillation run went.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DistillReport {
    /// Calibration loss (lambda-combined D) before the first step.
    pub initial_loss: f64,
    /// The best calibration loss measured, and after how many steps (its weights are kept).
    pub best_loss: f64,
    pub best_step: usize,
    pub steps_run: usize,
    /// `(step, calibration loss)` at every measurement.
    pub history: Vec<(usize, f64)>,
    /// Mean loss of each step's batch.
    pub batch_losses: Vec<f64>,
    /// Why the run stopped before its last step, if it did.
    pub stopped_early: Option<String>,
}

/// Adam's first and second moments of one parameter tensor.
#[derive(Clone)]
struct Moments {
    m: Vec<f64>,
    v: Vec<f64>,
}

impl Moments {
    fn new(n: usize) -> Self {
        Moments {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// One Adam step of `p` along `g` (step `t` >= 1); `keep` zeroes masked entries.
    fn step(&mut self, p: &mut [f32], g: &[f64], t: usize, lr: f64, keep: Option<&[u8]>) {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        const EPS: f64 = 1e-8;
        let c1 = 1.0 - B1.powi(t as i32);
        let c2 = 1.0 - B2.powi(t as i32);
        for i in 0..p.len() {
            if keep.is_some_and(|k| k[i] == 0) {
                p[i] = 0.0;
                continue;
            }
            self.m[i] = B1 * self.m[i] + (1.0 - B1) * g[i];
            self.v[i] = B2 * self.v[i] + (1.0 - B2) * g[i] * g[i];
            let step = lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + EPS);
            p[i] = (p[i] as f64 - step) as f32;
        }
    }
}

/// A unit's gradients summed over a batch, in f64.
struct GradSum {
    weight: Vec<f64>,
    bias: Option<Vec<f64>>,
    bn: Option<(Vec<f64>, Vec<f64>)>,
}

impl GradSum {
    fn zeros_like(g: &UnitGrads) -> Self {
        let z = |n: usize| vec![0.0; n];
        GradSum {
            weight: z(g.weight.data.len()),
            bias: g.bias.as_ref().map(|b| z(b.len())),
            bn: g.bn.as_ref().map(|(a, b)| (z(a.len()), z(b.len()))),
        }
    }

    fn add(&mut self, g: &UnitGrads, scale: f64) {
        let add = |dst: &mut [f64], src: &[f32]| {
            for (d, s) in dst.iter_mut().zip(src) {
                *d += *s as f64 * scale;
            }
        };
        add(&mut self.weight, &g.weight.data);
        if let (Some(d), Some(s)) = (self.bias.as_mut(), g.bias.as_ref()) {
            add(d, s);
        }
        if let (Some((dg, db)), Some((sg, sb))) = (self.bn.as_mut(), g.bn.as_ref()) {
            add(dg, sg);
            add(db, sb);
        }
    }

    fn is_finite(&self) -> bool {
        let ok = |v: &[f64]| v.iter().all(|x| x.is_finite());
        ok(&self.weight)
            && self.bias.as_deref().is_none_or(ok)
            && self.bn.as_ref().is_none_or(|(a, b)| ok(a) && ok(b))
    }
}

/// Adam state of one unit's parameters.
struct UnitState {
    weight: Moments,
    bias: Option<Moments>,
    bn: Option<(Moments, Moments)>,
}

/// Distils `pruned` towards the dense outputs held by `reference` (computed on `scans`, in
/// the same order). `masks[i]`: unit i's weight mask (`None`: all kept).
pub fn distill(
    pruned: &mut Detector,
    reference: &DenseReference,
    masks: &[Option<Vec<u8>>],
    scans: &[CalibScan],
    cfg: &DistillSettings,
    ctl: &Control,
) -> Result<DistillReport, ProbeError> {
    if scans.is_empty() || reference.len() != scans.len() {
        return Err(ProbeError::NoScans);
    }
    if cfg.batch == 0 || cfg.lr.is_nan() || cfg.lr <= 0.0 || cfg.lr.is_infinite() {
        return Err(ProbeError::Settings(format!(
            "distillation needs a batch of at least 1 scan and a positive learning rate (got batch {}, lr {})",
            cfg.batch, cfg.lr
        )));
    }
    let eval_every = match cfg.eval_every {
        0 => (cfg.steps / 10).max(1),
        n => n,
    };
    let calibration_loss = |det: &Detector| -> Result<f64, ProbeError> {
        let (c, l) = reference.distortion(det, scans, ctl)?;
        Ok(cfg.lambdas.combine(c, l))
    };
    let mut report = DistillReport {
        initial_loss: calibration_loss(pruned)?,
        ..Default::default()
    };
    report.best_loss = report.initial_loss;
    report.history.push((0, report.initial_loss));
    let mut best = pruned.clone();
    let mut state: Vec<UnitState> = pruned
        .units()
        .iter()
        .map(|u| UnitState {
            weight: Moments::new(u.weight.numel()),
            bias: u.bias.as_ref().map(|b| Moments::new(b.len())),
            bn: u.bn.as_ref().map(|b| {
                (
                    Moments::new(b.bn.gamma.len()),
                    Moments::new(b.bn.beta.len()),
                )
            }),
        })
        .collect();
    let mut rng = Rng::new(cfg.seed);
    let mut order: Vec<usize> = Vec::new();
    for t in 1..=cfg.steps {
        // Batch: the next scans of a per-epoch shuffle.
        let mut batch = Vec::with_capacity(cfg.batch);
        while batch.len() < cfg.batch.min(scans.len()) {
            if order.is_empty() {
                order = (0..scans.len()).collect();
                for i in (1..order.len()).rev() {
                    let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                    order.swap(i, j);
                }
            }
            if let Some(i) = order.pop() {
                batch.push(i);
            }
        }
        let mut sums: Option<Vec<GradSum>> = None;
        let mut batch_loss = 0.0;
        let scale = 1.0 / batch.len() as f64;
        ctl.check()?;
        // The batch's scans in parallel; their gradients summed in batch order (deterministic).
        let per_scan: Vec<Result<(f64, Vec<UnitGrads>), ProbeError>> = batch
            .par_iter()
            .map(|&i| {
                let model_err = |source| ProbeError::Model {
                    scan: scans[i].id.clone(),
                    source,
                };
                let taped = pruned.forward_taped(&scans[i].points).map_err(model_err)?;
                let ((c, l), d_raw) = reference.scan_gradient(i, &taped.out.raw, cfg.lambdas);
                let grads = pruned.backward(&taped, &d_raw).map_err(model_err)?;
                Ok((cfg.lambdas.combine(c, l), grads))
            })
            .collect();
        for r in per_scan {
            let (loss, grads) = r?;
            batch_loss += loss * scale;
            let sums = sums.get_or_insert_with(|| grads.iter().map(GradSum::zeros_like).collect());
            for (s, g) in sums.iter_mut().zip(&grads) {
                s.add(g, scale);
            }
        }
        report.batch_losses.push(batch_loss);
        report.steps_run = t;
        let Some(sums) = sums else { break };
        if !batch_loss.is_finite() || !sums.iter().all(GradSum::is_finite) {
            report.stopped_early = Some(format!(
                "step {t}: the loss or its gradient is not finite; kept the weights of step {}",
                report.best_step
            ));
            break;
        }
        apply_step(pruned, &mut state, &sums, masks, t, cfg.lr)?;
        (ctl.on_step)(
            t,
            cfg.steps,
            &format!("distillation step {t}: batch loss {batch_loss:.4e}"),
        );
        if t % eval_every == 0 || t == cfg.steps {
            let loss = calibration_loss(pruned)?;
            report.history.push((t, loss));
            if loss < report.best_loss {
                report.best_loss = loss;
                report.best_step = t;
                best = pruned.clone();
            } else if !loss.is_finite() || loss > 1.5 * report.best_loss {
                report.stopped_early = Some(format!(
                    "step {t}: the calibration loss rose to {loss:.4e} (best {:.4e} at step {}); kept the best weights",
                    report.best_loss, report.best_step
                ));
                break;
            }
        }
    }
    *pruned = best;
    Ok(report)
}

/// One Adam step on every unit's weight (masked), bias and BatchNorm affine parameters.
fn apply_step(
    det: &mut Detector,
    state: &mut [UnitState],
    sums: &[GradSum],
    masks: &[Option<Vec<u8>>],
    t: usize,
    lr: f64,
) -> Result<(), ProbeError> {
    for (i, unit) in det.units_mut().into_iter().enumerate() {
        let (st, g) = (&mut state[i], &sums[i]);
        let mut weight = unit.weight.clone();
        let keep = masks.get(i).and_then(Option::as_deref);
        st.weight.step(&mut weight.data, &g.weight, t, lr, keep);
        let mut bias = unit.bias.clone();
        if let (Some(b), Some(m), Some(gb)) = (bias.as_mut(), st.bias.as_mut(), g.bias.as_ref()) {
            m.step(b, gb, t, lr, None);
        }
        let mut bn = unit.bn.as_ref().map(|b| b.bn.clone());
        if let (Some(bn), Some((mg, mb)), Some((gg, gb))) =
            (bn.as_mut(), st.bn.as_mut(), g.bn.as_ref())
        {
            mg.step(&mut bn.gamma, gg, t, lr, None);
            mb.step(&mut bn.beta, gb, t, lr, None);
        }
        unit.set_params(Tensor::from_vec(&weight.shape, weight.data), bias, bn)
            .map_err(settings)?;
    }
    Ok(())
}
