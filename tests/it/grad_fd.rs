//! Finite-difference checks of the backward passes of small units ([`Unit::backward`]) and of
//! the PFN layers with their max-over-pillar routing ([`PillarVfe::backward`]).
//!
//! For a unit `y = forward(θ; x)` (conv / transposed conv / linear, eval-mode BN folded in,
//! optional ReLU) and a fixed random `dy`, the loss is `L(θ) = sum(dy * y)` accumulated in f64.
//! Every element of every checkpoint parameter (weight, bias, BN gamma, BN beta) and of the
//! input is perturbed by `±h`, the unit is rebuilt with [`Unit::new`] (which refolds the BN),
//! and the central difference `(L(+h) - L(-h)) / 2h` is compared with the analytic gradient.
//!
//! Step: `h = 1e-2 * max(|θ_i|, 0.1)`. `L` is piecewise linear in any single one of these
//! parameters or inputs (the fold `W * gamma / sqrt(var + eps)` is linear in `W` and in
//! `gamma`), so the only error besides f32 rounding is a ReLU (or max) kink inside
//! `[θ - h, θ + h]`. Kinks are kept out of the interval in two ways:
//! - Units: a ReLU-free twin of the unit gives the pre-activations `z`, which are linear in
//!   `θ_i`; the step is cut to half the distance to the nearest sign change of any `z`.
//! - Everywhere (the only guard for the PFN's max over pillars): the two one-sided slopes must
//!   agree to `5e-3 * max|analytic|`, else the step is halved (at most 6 times).
//!
//! An element whose step would fall below `h / 64` is skipped; each check asserts that fewer
//! than 5% of its elements were skipped.
//!
//! Tolerance per tensor, with `s = max(max|analytic|, 1e-3)`: every checked element must have
//! `|fd - analytic| <= 2e-2 * s`, and `|fd - analytic|_2 / max(|analytic|_2, 1e-3) <= 1e-2`.

use super::util::TempDir;
use pruneview::rng::Rng;
use std::path::PathBuf;

use pruneview::detect::layers::{NamedBatchNorm, Unit, UnitGrads, UnitKind};
use pruneview::detect::vfe::{PfnTape, PillarVfe};
use pruneview::io::{OutTensor, write_safetensors};
use pruneview::model::Weights;
use pruneview::model::config::{DataConfig, VfeConfig, VfeKind};
use pruneview::nn::{BatchNorm, Tensor};
use pruneview::pointcloud::voxelize::{VoxelStats, Voxels};

/// Relative finite-difference step.
const REL_STEP: f32 = 1e-2;
/// `h = REL_STEP * max(|θ|, STEP_FLOOR)`.
const STEP_FLOOR: f32 = 0.1;
/// How often the step is halved when it straddles a kink before the element is skipped.
const MAX_HALVINGS: usize = 6;
/// An element is skipped when its step would be below `h / MIN_STEP_DIV`.
const MIN_STEP_DIV: f32 = 64.0;
/// Largest gap between the one-sided slopes, relative to `max|analytic|`, taken as "no kink".
const AGREE_TOL: f64 = 5e-3;
/// Per-element tolerance, relative to the tensor's largest analytic gradient.
const ELEM_TOL: f64 = 2e-2;
/// Relative L2 error allowed per tensor.
const NORM_TOL: f64 = 1e-2;
/// Largest fraction of skipped elements per check.
const MAX_SKIPPED: f64 = 0.05;

/// Test data from the crate's seeded generator.
trait RandomData {
    fn tensor(&mut self, shape: &[usize], lo: f32, hi: f32) -> Tensor;
    fn batchnorm(&mut self, c: usize, eps: f32) -> BatchNorm;
}

impl RandomData for Rng {
    fn tensor(&mut self, shape: &[usize], lo: f32, hi: f32) -> Tensor {
        Tensor::from_vec(shape, self.values(shape.iter().product(), lo, hi))
    }
    /// A random BatchNorm: gamma of magnitude 0.5..1.5 with random signs, positive var.
    fn batchnorm(&mut self, c: usize, eps: f32) -> BatchNorm {
        let gamma = (0..c)
            .map(|_| {
                let g = self.range(0.5, 1.5);
                if self.next_u64() & 3 == 0 { -g } else { g }
            })
            .collect();
        BatchNorm {
            gamma,
            beta: self.values(c, -0.5, 0.5),
            mean: self.values(c, -0.5, 0.5),
            var: self.values(c, 0.3, 2.0),
            eps,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Finite differences and the comparison helper
// ---------------------------------------------------------------------------------------------

/// Central differences of a scalar function of a parameter vector.
struct Fd {
    /// `dL/dθ_i`, or `None` where every step tried straddled a kink.
    values: Vec<Option<f64>>,
    /// Elements that were checked with a smaller step than the nominal one.
    reduced: usize,
}

impl Fd {
    fn skipped(&self) -> usize {
        self.values.iter().filter(|v| v.is_none()).count()
    }
}

/// Central differences of `eval(i, v)` (the loss with element `i` of `base` set to `v`).
/// `safe_step(i, t, h)` may shorten the nominal step `h` (to stay clear of known kinks);
/// `agree` is the largest gap between the two one-sided slopes taken as "no kink in between".
fn finite_diff(
    base: &[f32],
    agree: f64,
    mut safe_step: impl FnMut(usize, f32, f32) -> f32,
    mut eval: impl FnMut(usize, f32) -> f64,
) -> Fd {
    let mut values = Vec::with_capacity(base.len());
    let mut reduced = 0;
    for (i, &t) in base.iter().enumerate() {
        let l0 = eval(i, t);
        let h0 = REL_STEP * t.abs().max(STEP_FLOOR);
        let mut h = safe_step(i, t, h0).min(h0);
        let mut value = None;
        for _ in 0..=MAX_HALVINGS {
            if h < h0 / MIN_STEP_DIV {
                break;
            }
            let (tp, tm) = (t + h, t - h);
            let (lp, lm) = (eval(i, tp), eval(i, tm));
            // The steps actually taken in f32.
            let (sp, sm) = ((tp - t) as f64, (t - tm) as f64);
            let fwd = (lp - l0) / sp;
            let bwd = (l0 - lm) / sm;
            if (fwd - bwd).abs() <= agree {
                value = Some((lp - lm) / (sp + sm));
                if h < h0 {
                    reduced += 1;
                }
                break;
            }
            h *= 0.5;
        }
        values.push(value);
    }
    Fd { values, reduced }
}

/// How one tensor's analytic gradient compares with its finite differences.
#[derive(Debug)]
struct Report {
    name: String,
    n: usize,
    skipped: usize,
    reduced: usize,
    /// `max|analytic|` (floored at 1e-3): the scale of the per-element tolerance.
    scale: f64,
    /// `max |fd - analytic| / scale` over checked elements.
    max_err: f64,
    /// `|fd - analytic|_2 / max(|analytic|_2, 1e-3)` over checked elements.
    rel_norm: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<34} n={:4} max|g|={:9.4} max_err/max|g|={:.2e} rel_l2={:.2e} reduced={} skipped={}",
            self.name, self.n, self.scale, self.max_err, self.rel_norm, self.reduced, self.skipped
        )
    }
}

/// The tolerance scale of an analytic gradient.
fn scale_of(analytic: &[f32]) -> f64 {
    analytic
        .iter()
        .fold(0f64, |m, &v| m.max((v as f64).abs()))
        .max(1e-3)
}

/// Compares finite differences with an analytic gradient; `Err` names the first violation.
fn compare(name: &str, fd: &Fd, analytic: &[f32]) -> Result<Report, String> {
    assert_eq!(fd.values.len(), analytic.len(), "{name}: length");
    let scale = scale_of(analytic);
    let (mut max_err, mut d2, mut a2) = (0f64, 0f64, 0f64);
    let mut first_bad = None;
    for (i, (fd, &an)) in fd.values.iter().zip(analytic).enumerate() {
        let Some(fd) = *fd else { continue };
        let an = an as f64;
        let err = (fd - an).abs();
        if err > ELEM_TOL * scale && first_bad.is_none() {
            first_bad = Some(format!(
                "{name}[{i}]: finite difference {fd:.6} vs analytic {an:.6} (|diff| {err:.2e} > \
                 {ELEM_TOL} * {scale:.4})"
            ));
        }
        max_err = max_err.max(err / scale);
        d2 += err * err;
        a2 += an * an;
    }
    let report = Report {
        name: name.to_string(),
        n: analytic.len(),
        skipped: fd.skipped(),
        reduced: fd.reduced,
        scale,
        max_err,
        rel_norm: d2.sqrt() / a2.sqrt().max(1e-3),
    };
    if let Some(bad) = first_bad {
        return Err(bad);
    }
    if report.rel_norm > NORM_TOL {
        return Err(format!(
            "{name}: relative L2 error {:.3e} > {NORM_TOL}",
            report.rel_norm
        ));
    }
    Ok(report)
}

/// Checks a batch of reports: all comparisons passed, few skips, non-vacuous gradients.
fn assert_reports(case: &str, results: Vec<Result<Report, String>>) {
    println!("== {case}");
    let mut errors = Vec::new();
    let (mut total, mut skipped) = (0, 0);
    for r in results {
        match r {
            Ok(r) => {
                println!("   {r}");
                total += r.n;
                skipped += r.skipped;
                assert!(
                    r.scale > 1e-2,
                    "{case}: {} has a vanishing analytic gradient (max {}), the check would be vacuous",
                    r.name,
                    r.scale
                );
            }
            Err(e) => {
                println!("   FAIL {e}");
                errors.push(e);
            }
        }
    }
    assert!(errors.is_empty(), "{case}: {}", errors.join("; "));
    assert!(
        (skipped as f64) < MAX_SKIPPED * total as f64,
        "{case}: {skipped} of {total} elements skipped (kinks)"
    );
}

// ---------------------------------------------------------------------------------------------
// Units
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Param {
    Weight,
    Bias,
    Gamma,
    Beta,
}

const PARAMS: [Param; 4] = [Param::Weight, Param::Bias, Param::Gamma, Param::Beta];

impl Param {
    fn name(self) -> &'static str {
        match self {
            Param::Weight => "weight",
            Param::Bias => "bias",
            Param::Gamma => "bn.gamma",
            Param::Beta => "bn.beta",
        }
    }

    /// The unit's values of this parameter, if it has it.
    fn values(self, u: &Unit) -> Option<Vec<f32>> {
        match self {
            Param::Weight => Some(u.weight.data.clone()),
            Param::Bias => u.bias.clone(),
            Param::Gamma => u.bn.as_ref().map(|b| b.bn.gamma.clone()),
            Param::Beta => u.bn.as_ref().map(|b| b.bn.beta.clone()),
        }
    }

    /// The analytic gradient of this parameter.
    fn grad(self, g: &UnitGrads) -> Option<Vec<f32>> {
        match self {
            Param::Weight => Some(g.weight.data.clone()),
            Param::Bias => g.bias.clone(),
            Param::Gamma => g.bn.as_ref().map(|b| b.0.clone()),
            Param::Beta => g.bn.as_ref().map(|b| b.1.clone()),
        }
    }

    /// `u` rebuilt (refolded) with element `i` of this parameter set to `v`.
    fn perturbed(self, u: &Unit, i: usize, v: f32) -> Unit {
        let mut weight = u.weight.clone();
        let mut bias = u.bias.clone();
        let mut bn = u.bn.clone();
        match self {
            Param::Weight => weight.data[i] = v,
            Param::Bias => bias.as_mut().expect("bias")[i] = v,
            Param::Gamma => bn.as_mut().expect("bn").bn.gamma[i] = v,
            Param::Beta => bn.as_mut().expect("bn").bn.beta[i] = v,
        }
        Unit::new(u.prefix.clone(), u.kind, weight, bias, bn, u.relu).expect("rebuild unit")
    }
}

fn make_unit(
    kind: UnitKind,
    weight: Tensor,
    bias: Option<Vec<f32>>,
    bn: Option<BatchNorm>,
    relu: bool,
) -> Unit {
    let bn = bn.map(|bn| NamedBatchNorm {
        prefix: "test.bn".into(),
        bn,
    });
    Unit::new("test.layer".into(), kind, weight, bias, bn, relu).expect("build unit")
}

/// Runs a unit on a `[C, H, W]` map, or on `[rows, in]` rows for a linear unit.
fn run(u: &Unit, x: &Tensor) -> Tensor {
    match u.kind {
        UnitKind::Linear => {
            let rows = x.shape[0];
            let y = u.forward_rows(x.data.clone(), rows).expect("forward_rows");
            let cols = y.len() / rows;
            Tensor::from_vec(&[rows, cols], y)
        }
        _ => u.forward_map(x).expect("forward_map"),
    }
}

/// `sum(dy * y)` in f64.
fn loss(y: &[f32], dy: &[f32]) -> f64 {
    assert_eq!(y.len(), dy.len(), "loss: y and dy differ in length");
    y.iter().zip(dy).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// The analytic and finite-difference gradients of one unit on one input.
struct UnitCheck {
    unit: Unit,
    /// The same unit without its ReLU (pre-activations), for ReLU units.
    twin: Option<Unit>,
    /// `twin`'s output on `x`.
    z: Vec<f32>,
    x: Tensor,
    dy: Tensor,
    y: Tensor,
    dx: Tensor,
    grads: UnitGrads,
}

impl UnitCheck {
    fn new(unit: Unit, x: Tensor, rng: &mut Rng) -> Self {
        let y = run(&unit, &x);
        let twin = unit.relu.then(|| {
            let u = &unit;
            let (w, b, bn) = (u.weight.clone(), u.bias.clone(), u.bn.clone());
            Unit::new(u.prefix.clone(), u.kind, w, b, bn, false).expect("ReLU-free twin")
        });
        let z = twin.as_ref().map(|t| run(t, &x).data).unwrap_or_default();
        if twin.is_some() {
            // The fused ReLU is max(z, 0) of the unfused layer.
            for (a, b) in y.data.iter().zip(&z) {
                assert!(
                    (a - b.max(0.0)).abs() <= 1e-6 * (1.0 + b.abs()),
                    "fused ReLU {a} vs max(z, 0) of {b}"
                );
            }
        }
        let dy = rng.tensor(&y.shape, -1.0, 1.0);
        let (dx, grads) = unit.backward(&x, &y, dy.clone(), true).expect("backward");
        let dx = dx.expect("backward returned no dx although need_dx");
        // Without dx: same parameter gradients, no dx.
        let (no_dx, g2) = unit.backward(&x, &y, dy.clone(), false).expect("backward");
        assert!(no_dx.is_none(), "backward returned dx although !need_dx");
        assert_eq!(
            g2.weight, grads.weight,
            "weight gradient depends on need_dx"
        );
        assert_eq!(g2.bias, grads.bias, "bias gradient depends on need_dx");
        assert_eq!(g2.bn, grads.bn, "BN gradients depend on need_dx");
        // Shapes and presence.
        assert_eq!(dx.shape, x.shape, "dx shape");
        assert_eq!(grads.weight.shape, unit.weight.shape, "dW shape");
        assert_eq!(grads.bias.is_some(), unit.bias.is_some(), "dbias presence");
        assert_eq!(grads.bn.is_some(), unit.bn.is_some(), "dBN presence");
        let c = unit.out_channels();
        if let Some(v) = &grads.bias {
            assert_eq!(v.len(), c, "dbias length");
        }
        if let Some((g, b)) = &grads.bn {
            assert_eq!((g.len(), b.len()), (c, c), "dgamma/dbeta length");
        }
        UnitCheck {
            unit,
            twin,
            z,
            x,
            dy,
            y,
            dx,
            grads,
        }
    }

    /// Output of `unit` (or of its twin) with element `i` of `p` (`None`: the input) at `v`.
    fn output(&self, unit: &Unit, p: Option<Param>, i: usize, v: f32) -> Vec<f32> {
        match p {
            Some(p) => run(&p.perturbed(unit, i, v), &self.x).data,
            None => {
                let mut x = self.x.clone();
                x.data[i] = v;
                run(unit, &x).data
            }
        }
    }

    /// The largest step `<= h` from `t` that keeps every pre-activation on its side of zero:
    /// half the distance to the nearest zero crossing (`z` is linear in one parameter).
    fn safe_step(&self, p: Option<Param>, i: usize, t: f32, h: f32) -> f32 {
        let Some(twin) = &self.twin else { return h };
        let (tp, tm) = (t + h, t - h);
        let zp = self.output(twin, p, i, tp);
        let zm = self.output(twin, p, i, tm);
        let span = (tp - tm) as f64;
        let mut step = h as f64;
        for ((&z0, &a), &b) in self.z.iter().zip(&zp).zip(&zm) {
            let slope = (a as f64 - b as f64) / span;
            if slope != 0.0 {
                step = step.min(0.5 * (z0 as f64).abs() / slope.abs());
            }
        }
        step as f32
    }

    /// Finite differences of the loss over one parameter (`None`: the input).
    fn fd(&self, p: Option<Param>, analytic: &[f32]) -> Fd {
        let base = match p {
            Some(p) => p.values(&self.unit).expect("parameter present"),
            None => self.x.data.clone(),
        };
        finite_diff(
            &base,
            AGREE_TOL * scale_of(analytic),
            |i, t, h| self.safe_step(p, i, t, h),
            |i, v| loss(&self.output(&self.unit, p, i, v), &self.dy.data),
        )
    }

    /// Compares every parameter gradient and dx with finite differences.
    fn reports(&self) -> Vec<Result<Report, String>> {
        let mut out = Vec::new();
        for p in PARAMS {
            let (Some(_), Some(an)) = (p.values(&self.unit), p.grad(&self.grads)) else {
                continue;
            };
            out.push(compare(p.name(), &self.fd(Some(p), &an), &an));
        }
        out.push(compare("dx", &self.fd(None, &self.dx.data), &self.dx.data));
        out
    }

    /// Fraction of outputs the ReLU zeroed.
    fn dead_fraction(&self) -> f64 {
        self.y.data.iter().filter(|&&v| v <= 0.0).count() as f64 / self.y.data.len() as f64
    }
}

/// Builds, checks and reports one unit case.
fn check_unit(case: &str, unit: Unit, x: Tensor, rng: &mut Rng) {
    let relu = unit.relu;
    let c = UnitCheck::new(unit, x, rng);
    if relu {
        // The ReLU mask must actually be exercised, on both sides.
        let dead = c.dead_fraction();
        assert!(
            (0.05..=0.95).contains(&dead),
            "{case}: {:.0}% of outputs are zero, the ReLU is not exercised",
            dead * 100.0
        );
    }
    assert_reports(case, c.reports());
}

fn conv(stride: usize, padding: usize) -> UnitKind {
    UnitKind::Conv { stride, padding }
}

/// A weight with entries of size ~1/sqrt(fan_in).
fn weight(rng: &mut Rng, shape: &[usize], fan_in: usize) -> Tensor {
    let a = (3.0 / fan_in as f32).sqrt();
    rng.tensor(shape, -a, a)
}

#[test]
fn conv3x3_stride1_bn_relu() {
    let mut rng = Rng::new(1);
    let (cin, cout) = (4, 3);
    let w = weight(&mut rng, &[cout, cin, 3, 3], cin * 9);
    let bn = rng.batchnorm(cout, 1e-3);
    let u = make_unit(conv(1, 1), w, None, Some(bn), true);
    let x = rng.tensor(&[cin, 6, 7], -1.0, 1.0);
    check_unit("conv 3x3 s1 p1 + BN + ReLU", u, x, &mut rng);
}

#[test]
fn conv3x3_stride2_bn_relu() {
    let mut rng = Rng::new(2);
    let (cin, cout) = (3, 4);
    let w = weight(&mut rng, &[cout, cin, 3, 3], cin * 9);
    let bn = rng.batchnorm(cout, 1e-3);
    let u = make_unit(conv(2, 1), w, None, Some(bn), true);
    let x = rng.tensor(&[cin, 7, 6], -1.0, 1.0);
    check_unit("conv 3x3 s2 p1 + BN + ReLU", u, x, &mut rng);
}

#[test]
fn conv3x3_bias_no_bn_no_relu() {
    // Like a CenterPoint head's final conv.
    let mut rng = Rng::new(3);
    let (cin, cout) = (5, 2);
    let w = weight(&mut rng, &[cout, cin, 3, 3], cin * 9);
    let b = rng.values(cout, -0.5, 0.5);
    let u = make_unit(conv(1, 1), w, Some(b), None, false);
    let x = rng.tensor(&[cin, 6, 7], -1.0, 1.0);
    check_unit("conv 3x3 s1 p1 + bias", u, x, &mut rng);
}

#[test]
fn conv1x1_bias() {
    let mut rng = Rng::new(4);
    let (cin, cout) = (4, 3);
    let w = weight(&mut rng, &[cout, cin, 1, 1], cin);
    let b = rng.values(cout, -0.5, 0.5);
    let u = make_unit(conv(1, 0), w, Some(b), None, false);
    let x = rng.tensor(&[cin, 6, 7], -1.0, 1.0);
    check_unit("conv 1x1 + bias", u, x, &mut rng);
}

#[test]
fn conv3x3_bias_bn_relu() {
    // A conv bias before a BN: exercises the `(b - mean)` term of dgamma and dL/db = g * scale.
    let mut rng = Rng::new(5);
    let (cin, cout) = (3, 3);
    let w = weight(&mut rng, &[cout, cin, 3, 3], cin * 9);
    let b = rng.values(cout, -0.5, 0.5);
    let bn = rng.batchnorm(cout, 1e-5);
    let u = make_unit(conv(1, 1), w, Some(b), Some(bn), true);
    let x = rng.tensor(&[cin, 6, 7], -1.0, 1.0);
    check_unit("conv 3x3 s1 p1 + bias + BN + ReLU", u, x, &mut rng);
}

#[test]
fn conv_transpose_k2_stride2_bn_relu() {
    let mut rng = Rng::new(6);
    let (cin, cout) = (4, 3);
    let w = weight(&mut rng, &[cin, cout, 2, 2], cin);
    let bn = rng.batchnorm(cout, 1e-3);
    let u = make_unit(
        UnitKind::ConvTranspose { stride: 2 },
        w,
        None,
        Some(bn),
        true,
    );
    let x = rng.tensor(&[cin, 3, 4], -1.0, 1.0);
    check_unit("conv-transpose k2 s2 + BN + ReLU", u, x, &mut rng);
}

#[test]
fn conv_transpose_k1_stride1_bn_relu() {
    let mut rng = Rng::new(7);
    let (cin, cout) = (5, 4);
    let w = weight(&mut rng, &[cin, cout, 1, 1], cin);
    let bn = rng.batchnorm(cout, 1e-3);
    let u = make_unit(
        UnitKind::ConvTranspose { stride: 1 },
        w,
        None,
        Some(bn),
        true,
    );
    let x = rng.tensor(&[cin, 6, 7], -1.0, 1.0);
    check_unit("conv-transpose k1 s1 + BN + ReLU", u, x, &mut rng);
}

#[test]
fn linear_bn_relu_rows() {
    // A PFN layer: rows of point features, Linear without bias, BatchNorm1d (eps 1e-3), ReLU.
    let mut rng = Rng::new(8);
    let (cin, cout, rows) = (5, 4, 9);
    let w = weight(&mut rng, &[cout, cin], cin);
    let bn = rng.batchnorm(cout, 1e-3);
    let u = make_unit(UnitKind::Linear, w, None, Some(bn), true);
    let x = rng.tensor(&[rows, cin], -1.0, 1.0);
    check_unit("linear + BN + ReLU (rows)", u, x, &mut rng);
}

#[test]
fn linear_bias_only() {
    let mut rng = Rng::new(9);
    let (cin, cout, rows) = (3, 2, 9);
    let w = weight(&mut rng, &[cout, cin], cin);
    let b = rng.values(cout, -0.5, 0.5);
    let u = make_unit(UnitKind::Linear, w, Some(b), None, false);
    let x = rng.tensor(&[rows, cin], -1.0, 1.0);
    check_unit("linear + bias (rows)", u, x, &mut rng);
}

/// The comparison can fail: a gradient 10% off, swapped BN gradients, or a dropped ReLU mask
/// are all rejected, while the true ones pass.
#[test]
fn comparison_rejects_wrong_gradients() {
    let mut rng = Rng::new(10);
    let (cin, cout) = (4, 3);
    let w = weight(&mut rng, &[cout, cin, 3, 3], cin * 9);
    let bn = rng.batchnorm(cout, 1e-3);
    let u = make_unit(conv(1, 1), w, None, Some(bn), true);
    let x = rng.tensor(&[cin, 6, 7], -1.0, 1.0);
    let c = UnitCheck::new(u, x, &mut rng);

    let dw = c.grads.weight.data.clone();
    let fd_w = c.fd(Some(Param::Weight), &dw);
    compare("weight", &fd_w, &dw).expect("the true weight gradient passes");
    let scaled: Vec<f32> = dw.iter().map(|v| v * 1.1).collect();
    let err = compare("weight * 1.1", &fd_w, &scaled).expect_err("a 10% error must fail");
    println!("rejected as expected: {err}");

    let (dgamma, dbeta) = c.grads.bn.clone().expect("bn grads");
    let fd_gamma = c.fd(Some(Param::Gamma), &dgamma);
    compare("gamma", &fd_gamma, &dgamma).expect("the true dgamma passes");
    let err = compare("gamma <- dbeta", &fd_gamma, &dbeta).expect_err("swapped BN grads fail");
    println!("rejected as expected: {err}");

    // The gradient of the same unit without its ReLU mask (its ReLU-free twin's backward).
    let twin = c.twin.as_ref().expect("a ReLU unit has a twin");
    let (_, g) = twin
        .backward(&c.x, &c.y, c.dy.clone(), false)
        .expect("backward");
    let err = compare("weight without ReLU mask", &fd_w, &g.weight.data)
        .expect_err("a missing ReLU mask must fail");
    println!("rejected as expected: {err}");
}

// ---------------------------------------------------------------------------------------------
// PFN layers (PillarVFE / DynPillarVFE): max over each pillar's rows
// ---------------------------------------------------------------------------------------------

/// The PFN of a 4 x 4 x 1 pillar grid over `[0, 4) x [0, 4) x [-3, 1)`, points `x y z i`, two
/// layers (`num_filters [8, 6]`: 10 -> 4 (+ max) -> 6), random weights written to a
/// safetensors file and loaded like a checkpoint.
fn make_vfe(test: &str, kind: VfeKind, use_norm: bool, rng: &mut Rng) -> (PillarVfe, DataConfig) {
    let data = DataConfig {
        point_cloud_range: [0.0, 0.0, -3.0, 4.0, 4.0, 1.0],
        used_features: ["x", "y", "z", "intensity"].map(String::from).to_vec(),
        voxel_size: [1.0, 1.0, 4.0],
        grid_size: [4, 4, 1],
        voxelizer: None,
        fov_points_only: false,
    };
    let cfg = VfeConfig {
        kind,
        with_distance: false,
        use_absolute_xyz: true,
        use_norm,
        num_filters: vec![8, 6],
    };
    let mut tensors = Vec::new();
    for (i, (cin, cout)) in [(10, 4), (8, 6)].into_iter().enumerate() {
        let w = weight(rng, &[cout, cin], cin);
        tensors.push(OutTensor::f32(
            format!("vfe.pfn_layers.{i}.linear.weight"),
            &[cout, cin],
            &w.data,
        ));
        if use_norm {
            let bn = rng.batchnorm(cout, 1e-3);
            for (k, v) in [
                ("weight", &bn.gamma),
                ("bias", &bn.beta),
                ("running_mean", &bn.mean),
                ("running_var", &bn.var),
            ] {
                tensors.push(OutTensor::f32(
                    format!("vfe.pfn_layers.{i}.norm.{k}"),
                    &[cout],
                    v,
                ));
            }
        } else {
            tensors.push(OutTensor::f32(
                format!("vfe.pfn_layers.{i}.linear.bias"),
                &[cout],
                &rng.values(cout, -0.5, 0.5),
            ));
        }
    }
    let dir = TempDir::new(&format!("grad_fd-{test}"));
    let path = dir.join("pfn.safetensors");
    write_safetensors(&path, &tensors, None, &[]).expect("write weights");
    let w = Weights::open(&path).expect("open weights");
    let vfe = PillarVfe::load(&w, &cfg, &data).expect("load PFN");
    assert_eq!(vfe.layers.len(), 2);
    (vfe, data)
}

/// A point inside BEV cell `(x, y)`: `x y z intensity`.
fn point_in(rng: &mut Rng, cell: (usize, usize)) -> [f32; 4] {
    [
        cell.0 as f32 + rng.range(0.05, 0.95),
        cell.1 as f32 + rng.range(0.05, 0.95),
        rng.range(-2.8, 0.8),
        rng.range(0.0, 1.0),
    ]
}

/// Compares the PFN's unit gradients with finite differences of `sum(dp * pillar features)`.
fn check_vfe(
    case: &str,
    vfe: &PillarVfe,
    forward: impl Fn(&PillarVfe, Option<&mut PfnTape>) -> Vec<f32>,
    rng: &mut Rng,
) {
    let mut tape = PfnTape::default();
    let pillars = forward(vfe, Some(&mut tape));
    assert_eq!(
        pillars,
        forward(vfe, None),
        "taped and plain forward differ"
    );
    let dp = rng.values(pillars.len(), -1.0, 1.0);
    let grads = vfe.backward(&tape, &dp).expect("vfe backward");
    assert_eq!(grads.len(), vfe.layers.len());
    let mut results = Vec::new();
    for (li, (layer, g)) in vfe.layers.iter().zip(&grads).enumerate() {
        for p in PARAMS {
            let (Some(base), Some(an)) = (p.values(layer), p.grad(g)) else {
                assert_eq!(
                    p.values(layer).is_some(),
                    p.grad(g).is_some(),
                    "{}",
                    p.name()
                );
                continue;
            };
            let mut v = vfe.clone();
            let agree = AGREE_TOL * scale_of(&an);
            let fd = finite_diff(
                &base,
                agree,
                |_, _, h| h,
                |i, x| {
                    v.layers[li] = p.perturbed(layer, i, x);
                    loss(&forward(&v, None), &dp)
                },
            );
            results.push(compare(&format!("pfn.{li}.{}", p.name()), &fd, &an));
        }
    }
    assert_reports(case, results);
}

#[test]
fn pillar_vfe_padded_voxels_bn() {
    let mut rng = Rng::new(11);
    let (vfe, data) = make_vfe("pillar", VfeKind::Pillar, true, &mut rng);
    // Four pillars, 5 slots each, 5 / 1 / 3 / 2 points (zero-padded).
    let (max_points, nf) = (5, 4);
    let cells = [(0, 0), (2, 1), (1, 3), (3, 3)];
    let counts = [5, 1, 3, 2];
    let mut voxels = vec![0f32; cells.len() * max_points * nf];
    let mut coords = Vec::new();
    for (p, (&cell, &n)) in cells.iter().zip(&counts).enumerate() {
        for k in 0..n {
            let at = (p * max_points + k) * nf;
            voxels[at..at + nf].copy_from_slice(&point_in(&mut rng, cell));
        }
        coords.extend([0, cell.1 as i32, cell.0 as i32]);
    }
    let v = Voxels {
        voxels,
        coords,
        num_points: counts.iter().map(|&n| n as i32).collect(),
        num_features: nf,
        max_points,
        grid_size: data.grid_size,
        stats: VoxelStats::default(),
    };
    let forward = |vfe: &PillarVfe, tape: Option<&mut PfnTape>| {
        vfe.forward_voxels_taped(&v, tape)
            .expect("forward")
            .features
    };
    check_vfe("PillarVFE (padded voxels) + BN", &vfe, forward, &mut rng);
}

#[test]
fn dyn_pillar_vfe_points_bias() {
    let mut rng = Rng::new(12);
    let (vfe, _) = make_vfe("dynpillar", VfeKind::DynPillar, false, &mut rng);
    // 14 points over 4 pillars (in scrambled order), and one outside the grid.
    let cells = [(0, 0), (2, 1), (1, 3), (3, 3)];
    let mut points = Vec::new();
    for k in 0..14 {
        points.extend(point_in(&mut rng, cells[(k * 3 + k / 4) % 4]));
    }
    points.extend([5.5, 1.0, 0.0, 0.5]);
    let forward = |vfe: &PillarVfe, tape: Option<&mut PfnTape>| {
        vfe.forward_points_taped(&points, 4, tape)
            .expect("forward")
            .features
    };
    check_vfe("DynPillarVFE (points) + bias", &vfe, forward, &mut rng);
}

/// The VJP through a whole voxel model (head, 2-D backbone, HeightCompression, the sparse
/// 3-D backbone with its shared rulebooks and residual blocks) against central differences
/// of `L = sum(probe * raw)` on the fixture's scan, for the weights of several sparse convs.
///
/// The whole network is re-run per step, so only the element with the largest analytic
/// gradient of each checked unit is perturbed (where `dL` stands far above the f32 noise of
/// `L`). A weight early in the network moves thousands of ReLUs: `L` is far from linear at
/// the unit tests' steps (one-sided slopes 4% apart at `1e-3` on SECOND's `conv_input`), so
/// the step starts at `REL_STEP / 8` of the weight's scale and is halved until the two
/// one-sided slopes agree to `NET_AGREE`; the central difference must then be within
/// `NET_TOL` of the analytic gradient, relative to the unit's largest one.
/// One-sided slopes this close (relative) count as "no kink" for a whole network.
const NET_AGREE: f64 = 0.05;
/// Whole-network tolerance, relative to the unit's largest analytic gradient. Seen: median
/// 0.5%, largest 5.3% (a first-layer weight, whose step crosses the most kinks); a wrong
/// rulebook, tap order or residual term is off by far more.
const NET_TOL: f64 = 0.08;

fn check_voxel_model(folder: &str, config: &str, cols: usize, units: &[&str]) {
    use pruneview::detect::{Detector, RawOutputs};
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference");
    let dir = root.join(folder);
    let mut det = Detector::load(Some(&root.join(config)), &dir.join("weights.safetensors"))
        .expect("load the voxel model");
    let bytes = std::fs::read(dir.join("points_in.bin")).expect("points_in.bin");
    let points: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(points.len() % cols, 0);
    let taped = det.forward_taped(&points).expect("forward");
    let mut rng = Rng::new(7);
    let probe = RawOutputs {
        outputs: taped
            .out
            .raw
            .outputs
            .iter()
            .map(|o| o.like(rng.tensor(&o.tensor.shape, -1.0, 1.0)))
            .collect(),
    };
    let loss_of = |det: &Detector| -> f64 {
        let out = det.forward(&points).expect("forward");
        out.raw
            .outputs
            .iter()
            .zip(&probe.outputs)
            .map(|(y, p)| loss(&y.tensor.data, &p.tensor.data))
            .sum()
    };
    let grads = det.backward(&taped, &probe).expect("backward");
    let l0 = loss_of(&det);
    let names: Vec<String> = det.units().iter().map(|u| u.prefix.clone()).collect();
    let mut failures = Vec::new();
    for &unit in units {
        let k = names
            .iter()
            .position(|n| n == unit)
            .unwrap_or_else(|| panic!("{folder}: no unit {unit}"));
        let analytic = &grads[k].weight.data;
        let mut order: Vec<usize> = (0..analytic.len()).collect();
        order.sort_by(|&a, &b| analytic[b].abs().total_cmp(&analytic[a].abs()));
        let w0 = det.units()[k].weight.clone();
        let scale = scale_of(analytic);
        // The largest-gradient weight whose loss is smooth around it: a ReLU kink within
        // every step (one weight in thousands) is skipped for the next largest.
        let mut checked = false;
        for &e in order.iter().take(8) {
            let mut h = REL_STEP / 8.0 * w0.data[e].abs().max(STEP_FLOOR);
            let mut fd = None;
            for _ in 0..=MAX_HALVINGS {
                let mut at = |delta: f32| {
                    let mut w = w0.clone();
                    w.data[e] += delta;
                    det.units_mut()[k].set_weight(w).unwrap();
                    loss_of(&det)
                };
                let (lp, lm) = (at(h), at(-h));
                let (right, left) = ((lp - l0) / h as f64, (l0 - lm) / h as f64);
                if (right - left).abs() <= NET_AGREE * right.abs().max(left.abs()) {
                    fd = Some((lp - lm) / (2.0 * h as f64));
                    break;
                }
                h /= 2.0;
            }
            det.units_mut()[k].set_weight(w0.clone()).unwrap();
            let Some(fd) = fd else {
                eprintln!("{folder} {unit}.weight[{e}]: a kink at every step, skipped");
                continue;
            };
            let a = analytic[e] as f64;
            let line = format!(
                "{folder} {unit}.weight[{e}]: finite difference {fd:e} (step {h:e}), analytic \
                 {a:e} (largest |analytic| {scale:e})"
            );
            eprintln!("{line}");
            if (fd - a).abs() > NET_TOL * scale {
                failures.push(line);
            }
            checked = true;
            break;
        }
        assert!(
            checked,
            "{unit}: a kink at every step of its 8 largest gradients"
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn second_sparse_backbone_vjp_matches_finite_differences() {
    check_voxel_model(
        "second_kitti_000008",
        "cfgs/kitti_models/second.yaml",
        4,
        &[
            "backbone_3d.conv_input.0",
            "backbone_3d.conv2.0.0",
            "backbone_3d.conv_out.0",
        ],
    );
}

#[test]
fn centerpoint_voxel_residual_vjp_matches_finite_differences() {
    check_voxel_model(
        "centerpoint_voxel_nuscenes",
        "cfgs/nuscenes_models/cbgs_voxel01_res3d_centerpoint.yaml",
        5,
        &["backbone_3d.conv1.0.conv1", "backbone_3d.conv2.1.conv2"],
    );
}
