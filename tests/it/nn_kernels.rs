//! The numeric kernels against naive direct-loop references accumulated in f64, on odd shapes
//! (strides, paddings, kernels 1-4, channel counts that are not multiples of the SIMD width,
//! non-square maps), for every algorithm and instruction set the dispatcher can pick. The
//! vector-Jacobian products are checked against finite differences of the f64 reference.

use pruneview::nn::vjp::{conv_transpose2d_vjp, conv2d_vjp, linear_vjp, relu_vjp_inplace};
use pruneview::nn::{
    BatchNorm, Conv2d, Conv2dParams, ConvAlgo, ConvTranspose2d, Isa, Tensor, batchnorm_inplace,
    conv_transpose2d, conv2d, fold_batchnorm, linear, relu_inplace,
};
use pruneview::rng::Rng;

/// Test data in [-1, 1) from the crate's seeded generator.
trait RandomData {
    fn tensor(&mut self, shape: &[usize]) -> Tensor;
    fn vec(&mut self, n: usize) -> Vec<f32>;
}

impl RandomData for Rng {
    fn tensor(&mut self, shape: &[usize]) -> Tensor {
        Tensor::from_vec(shape, self.vec(shape.iter().product()))
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        self.values(n, -1.0, 1.0)
    }
}

fn isas() -> Vec<Isa> {
    let mut v = vec![Isa::Generic];
    if Isa::detect() == Isa::Avx512 {
        v.push(Isa::Avx512);
    }
    v
}

/// Naive conv2d in f64: x [ci][h][w], w [co][ci][kh][kw].
#[allow(clippy::too_many_arguments)]
fn conv_ref(
    x: &[f64],
    cin: usize,
    h: usize,
    w: usize,
    wt: &[f64],
    cout: usize,
    kh: usize,
    kw: usize,
    s: usize,
    p: usize,
    bias: Option<&[f64]>,
) -> (Vec<f64>, usize, usize) {
    let ho = (h + 2 * p - kh) / s + 1;
    let wo = (w + 2 * p - kw) / s + 1;
    let mut y = vec![0f64; cout * ho * wo];
    for co in 0..cout {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut acc = bias.map_or(0.0, |b| b[co]);
                for ci in 0..cin {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * s + ky) as isize - p as isize;
                            let ix = (ox * s + kx) as isize - p as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                acc += wt[((co * cin + ci) * kh + ky) * kw + kx]
                                    * x[(ci * h + iy as usize) * w + ix as usize];
                            }
                        }
                    }
                }
                y[(co * ho + oy) * wo + ox] = acc;
            }
        }
    }
    (y, ho, wo)
}

/// Naive ConvTranspose2d in f64: x [ci][h][w], w [ci][co][kh][kw].
#[allow(clippy::too_many_arguments)]
fn convt_ref(
    x: &[f64],
    cin: usize,
    h: usize,
    w: usize,
    wt: &[f64],
    cout: usize,
    kh: usize,
    kw: usize,
    s: usize,
    p: usize,
    bias: Option<&[f64]>,
) -> (Vec<f64>, usize, usize) {
    let ho = (h - 1) * s + kh - 2 * p;
    let wo = (w - 1) * s + kw - 2 * p;
    let mut y = vec![0f64; cout * ho * wo];
    for co in 0..cout {
        let b = bias.map_or(0.0, |b| b[co]);
        y[co * ho * wo..][..ho * wo].iter_mut().for_each(|v| *v = b);
    }
    for ci in 0..cin {
        for iy in 0..h {
            for ix in 0..w {
                let xv = x[(ci * h + iy) * w + ix];
                for co in 0..cout {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let oy = (iy * s + ky) as isize - p as isize;
                            let ox = (ix * s + kx) as isize - p as isize;
                            if oy >= 0 && ox >= 0 && (oy as usize) < ho && (ox as usize) < wo {
                                y[(co * ho + oy as usize) * wo + ox as usize] +=
                                    wt[((ci * cout + co) * kh + ky) * kw + kx] * xv;
                            }
                        }
                    }
                }
            }
        }
    }
    (y, ho, wo)
}

fn f64v(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Max |got - want| relative to max(|want|, 1e-3); fails the test above `tol`.
fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
    let mut worst = 0f64;
    let mut at = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = (g as f64 - w).abs();
        assert!(
            e.is_finite(),
            "{what}: non-finite value at {i}: got {g}, want {w}"
        );
        if e > worst {
            worst = e;
            at = i;
        }
    }
    assert!(
        worst <= tol * scale,
        "{what}: max abs error {worst:.3e} at {at} (got {}, want {}) exceeds {tol:.0e} x scale {scale:.3e}",
        got[at],
        want[at]
    );
}

/// (cin, cout, h, w, k, stride, pad)
const CONV_SHAPES: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
    (3, 5, 9, 11, 3, 1, 1),
    (13, 17, 19, 23, 3, 1, 1),
    (7, 9, 20, 13, 3, 2, 1),
    (5, 11, 17, 17, 3, 2, 0),
    (6, 10, 12, 9, 1, 1, 0),
    (9, 3, 8, 14, 1, 2, 0),
    (4, 7, 10, 10, 2, 2, 0),
    (5, 6, 13, 11, 4, 1, 2),
    (3, 19, 15, 12, 4, 3, 1),
    (11, 8, 7, 30, 3, 1, 0),
    (2, 2, 4, 4, 3, 1, 2),
    (17, 9, 1, 40, 1, 1, 0),
    (8, 12, 6, 5, 3, 1, 1),
];

fn algos_for(k: usize, s: usize) -> Vec<ConvAlgo> {
    let mut v = vec![ConvAlgo::Auto, ConvAlgo::Direct, ConvAlgo::Im2colGemm];
    if k == 3 && s == 1 {
        v.push(ConvAlgo::Winograd);
    }
    v
}

#[test]
fn conv2d_matches_reference_on_odd_shapes() {
    let mut rng = Rng::new(1);
    for &(cin, cout, h, w, k, s, p) in CONV_SHAPES {
        let x = rng.tensor(&[cin, h, w]);
        let wt = rng.tensor(&[cout, cin, k, k]);
        let b = rng.vec(cout);
        for (with_bias, relu) in [(false, false), (true, false), (true, true)] {
            let bias = with_bias.then_some(&b[..]);
            let (mut want, ho, wo) = conv_ref(
                &f64v(&x.data),
                cin,
                h,
                w,
                &f64v(&wt.data),
                cout,
                k,
                k,
                s,
                p,
                bias.map(f64v).as_deref(),
            );
            if relu {
                want.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            let params = Conv2dParams::new(s, p).with_relu(relu);
            for isa in isas() {
                for algo in algos_for(k, s) {
                    let layer = Conv2d::with_algo_isa(&wt, bias, params, algo, isa).unwrap();
                    let y = layer.forward(&x).unwrap();
                    assert_eq!(y.shape, vec![cout, ho, wo]);
                    let tol = if layer.algo() == ConvAlgo::Winograd {
                        2e-5
                    } else {
                        2e-6
                    };
                    let what = format!(
                        "conv {cin}->{cout} {h}x{w} k{k} s{s} p{p} bias={with_bias} relu={relu} {algo:?}/{:?} {isa:?}",
                        layer.algo()
                    );
                    assert_close(&what, &y.data, &want, tol);
                }
            }
        }
    }
}

#[test]
fn conv2d_large_maps_cross_band_boundaries() {
    // Shapes big enough for several bands per thread and partial Winograd tiles at both edges.
    let mut rng = Rng::new(2);
    for &(cin, cout, h, w, s) in &[
        (24, 40, 45, 70, 1),
        (16, 24, 66, 38, 2),
        (64, 64, 30, 54, 1),
    ] {
        let x = rng.tensor(&[cin, h, w]);
        let wt = rng.tensor(&[cout, cin, 3, 3]);
        let b = rng.vec(cout);
        let (want, _, _) = conv_ref(
            &f64v(&x.data),
            cin,
            h,
            w,
            &f64v(&wt.data),
            cout,
            3,
            3,
            s,
            1,
            Some(&f64v(&b)),
        );
        for algo in algos_for(3, s) {
            let layer = Conv2d::with_algo(&wt, Some(&b), Conv2dParams::new(s, 1), algo).unwrap();
            let y = layer.forward(&x).unwrap();
            let tol = if layer.algo() == ConvAlgo::Winograd {
                2e-5
            } else {
                2e-6
            };
            assert_close(
                &format!("conv {cin}->{cout} {h}x{w} s{s} {algo:?}"),
                &y.data,
                &want,
                tol,
            );
        }
    }
}

#[test]
fn conv2d_forward_into_reuses_output_and_conv2d_fn_agrees() {
    let mut rng = Rng::new(3);
    let x = rng.tensor(&[5, 12, 9]);
    let wt = rng.tensor(&[7, 5, 3, 3]);
    let layer = Conv2d::new(&wt, None, Conv2dParams::new(1, 1)).unwrap();
    let a = layer.forward(&x).unwrap();
    let mut out = Tensor::from_vec(&[1], vec![42.0]);
    layer.forward_into(&x, &mut out).unwrap();
    assert_eq!(out, a);
    let b = conv2d(&x, &wt, None, Conv2dParams::new(1, 1)).unwrap();
    assert_eq!(b, a);
}

#[test]
fn conv2d_shape_errors_are_values() {
    let mut rng = Rng::new(4);
    let x = rng.tensor(&[5, 12, 9]);
    let wt = rng.tensor(&[7, 4, 3, 3]);
    assert!(
        conv2d(&x, &wt, None, Conv2dParams::new(1, 1)).is_err(),
        "channel mismatch"
    );
    let wt = rng.tensor(&[7, 5, 3, 3]);
    assert!(
        conv2d(&x, &wt, Some(&[0.0; 3]), Conv2dParams::new(1, 1)).is_err(),
        "bias length"
    );
    assert!(
        conv2d(&x, &wt, None, Conv2dParams::new(0, 1)).is_err(),
        "stride 0"
    );
    let tiny = rng.tensor(&[5, 1, 1]);
    assert!(
        conv2d(&tiny, &wt, None, Conv2dParams::new(1, 0)).is_err(),
        "kernel larger than input"
    );
    let flat = rng.tensor(&[5, 9]);
    assert!(
        conv2d(&flat, &wt, None, Conv2dParams::new(1, 1)).is_err(),
        "rank"
    );
    assert!(Conv2d::with_algo(&wt, None, Conv2dParams::new(2, 1), ConvAlgo::Winograd).is_err());
    let msg = conv2d(
        &x,
        &rng.tensor(&[7, 4, 3, 3]),
        None,
        Conv2dParams::new(1, 1),
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("input") && msg.contains("[5, 12, 9]"), "{msg}");
}

/// Winograd's error stays near the direct conv's on a realistic layer (64 channels, ReLU'd
/// activations, He-scaled weights), relative to the output scale.
#[test]
fn winograd_accuracy_on_a_backbone_like_layer() {
    let mut rng = Rng::new(5);
    let (c, h, w) = (64, 24, 40);
    let mut x = rng.tensor(&[c, h, w]);
    relu_inplace(&mut x.data);
    let mut wt = rng.tensor(&[c, c, 3, 3]);
    let he = (2.0 / (9.0 * c as f32)).sqrt() * 1.7;
    wt.data.iter_mut().for_each(|v| *v *= he);
    let (want, _, _) = conv_ref(
        &f64v(&x.data),
        c,
        h,
        w,
        &f64v(&wt.data),
        c,
        3,
        3,
        1,
        1,
        None,
    );
    let y = Conv2d::with_algo(&wt, None, Conv2dParams::new(1, 1), ConvAlgo::Winograd)
        .unwrap()
        .forward(&x)
        .unwrap();
    assert_close("winograd 64ch", &y.data, &want, 1e-5);
}

/// (cin, cout, h, w, k, stride, pad)
const CONVT_SHAPES: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
    (6, 10, 9, 7, 1, 1, 0),
    (5, 9, 8, 11, 2, 2, 0),
    (7, 3, 6, 5, 4, 4, 0),
    (3, 5, 5, 6, 3, 3, 0),
    (4, 6, 7, 5, 3, 2, 1),
    (5, 4, 6, 9, 4, 2, 1),
    (3, 7, 5, 4, 3, 1, 0),
    (2, 3, 4, 6, 2, 1, 0),
    (9, 13, 40, 3, 2, 2, 0),
];

#[test]
fn conv_transpose2d_matches_reference() {
    let mut rng = Rng::new(6);
    for &(cin, cout, h, w, k, s, p) in CONVT_SHAPES {
        let x = rng.tensor(&[cin, h, w]);
        let wt = rng.tensor(&[cin, cout, k, k]);
        let b = rng.vec(cout);
        for (with_bias, relu) in [(false, false), (true, true)] {
            let bias = with_bias.then_some(&b[..]);
            let (mut want, ho, wo) = convt_ref(
                &f64v(&x.data),
                cin,
                h,
                w,
                &f64v(&wt.data),
                cout,
                k,
                k,
                s,
                p,
                bias.map(f64v).as_deref(),
            );
            if relu {
                want.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            let params = Conv2dParams::new(s, p).with_relu(relu);
            for isa in isas() {
                let y = ConvTranspose2d::with_isa(&wt, bias, params, isa)
                    .unwrap()
                    .forward(&x)
                    .unwrap();
                assert_eq!(y.shape, vec![cout, ho, wo]);
                let what =
                    format!("convT {cin}->{cout} {h}x{w} k{k} s{s} p{p} bias={with_bias} {isa:?}");
                assert_close(&what, &y.data, &want, 2e-6);
            }
            let y = conv_transpose2d(&x, &wt, bias, params).unwrap();
            assert_close("conv_transpose2d fn", &y.data, &want, 2e-6);
        }
    }
    // forward_into overwrites whatever the reused buffer held, on every path.
    for &(k, s, p) in &[(1, 1, 0), (2, 2, 0), (3, 2, 1)] {
        let x = rng.tensor(&[4, 6, 5]);
        let layer = ConvTranspose2d::new(&rng.tensor(&[4, 3, k, k]), None, Conv2dParams::new(s, p))
            .unwrap();
        let want = layer.forward(&x).unwrap();
        let mut out = Tensor::from_vec(&[want.numel()], vec![f32::NAN; want.numel()]);
        layer.forward_into(&x, &mut out).unwrap();
        assert_eq!(out, want, "k{k} s{s} p{p}");
    }
    let x = rng.tensor(&[3, 4, 4]);
    assert!(
        conv_transpose2d(
            &x,
            &rng.tensor(&[4, 2, 2, 2]),
            None,
            Conv2dParams::new(2, 0)
        )
        .is_err()
    );
    assert!(
        conv_transpose2d(
            &x,
            &rng.tensor(&[3, 2, 2, 2]),
            None,
            Conv2dParams::new(1, 5)
        )
        .is_err()
    );
}

#[test]
fn linear_matches_reference_with_leading_dims() {
    let mut rng = Rng::new(7);
    for &(lead, inf, outf) in &[
        (&[5usize, 32][..], 10usize, 64usize),
        (&[37][..], 3, 5),
        (&[2, 3, 4][..], 17, 9),
        (&[1000][..], 64, 130),
    ] {
        let mut shape = lead.to_vec();
        shape.push(inf);
        let x = rng.tensor(&shape);
        let wt = rng.tensor(&[outf, inf]);
        let b = rng.vec(outf);
        let rows: usize = lead.iter().product();
        let mut want = vec![0f64; rows * outf];
        for r in 0..rows {
            for o in 0..outf {
                want[r * outf + o] = b[o] as f64
                    + (0..inf)
                        .map(|i| x.data[r * inf + i] as f64 * wt.data[o * inf + i] as f64)
                        .sum::<f64>();
            }
        }
        for isa in isas() {
            let y = pruneview::nn::linear_isa(&x, &wt, Some(&b), isa).unwrap();
            let mut oshape = lead.to_vec();
            oshape.push(outf);
            assert_eq!(y.shape, oshape);
            assert_close(
                &format!("linear {lead:?}x{inf}->{outf} {isa:?}"),
                &y.data,
                &want,
                2e-6,
            );
        }
    }
    let x = rng.tensor(&[4, 3]);
    assert!(linear(&x, &rng.tensor(&[5, 4]), None).is_err());
    assert!(linear(&x, &rng.tensor(&[5, 3]), Some(&[0.0; 4])).is_err());
}

fn random_bn(rng: &mut Rng, c: usize) -> BatchNorm {
    BatchNorm {
        gamma: rng.vec(c),
        beta: rng.vec(c),
        mean: rng.vec(c),
        var: rng.vec(c).iter().map(|v| v.abs() + 0.05).collect(),
        eps: 1e-3,
    }
}

fn bn_ref(v: f64, bn: &BatchNorm, c: usize) -> f64 {
    (v - bn.mean[c] as f64) / (bn.var[c] as f64 + bn.eps as f64).sqrt() * bn.gamma[c] as f64
        + bn.beta[c] as f64
}

#[test]
fn batchnorm_folds_into_conv_convt_and_linear() {
    let mut rng = Rng::new(8);
    // Conv2d: out channels on axis 0.
    let (cin, cout, h, w) = (5, 7, 9, 8);
    let x = rng.tensor(&[cin, h, w]);
    let wt = rng.tensor(&[cout, cin, 3, 3]);
    let b = rng.vec(cout);
    let bn = random_bn(&mut rng, cout);
    let (y, ho, wo) = conv_ref(
        &f64v(&x.data),
        cin,
        h,
        w,
        &f64v(&wt.data),
        cout,
        3,
        3,
        2,
        1,
        Some(&f64v(&b)),
    );
    let want: Vec<f64> = y
        .iter()
        .enumerate()
        .map(|(i, &v)| bn_ref(v, &bn, i / (ho * wo)))
        .collect();
    let (fw, fb) = fold_batchnorm(&wt, Some(&b), &bn, 0).unwrap();
    let got = conv2d(&x, &fw, Some(&fb), Conv2dParams::new(2, 1)).unwrap();
    assert_close("folded conv", &got.data, &want, 1e-5);

    // ConvTranspose2d: out channels on axis 1, no bias.
    let wt = rng.tensor(&[cin, cout, 2, 2]);
    let (y, ho, wo) = convt_ref(
        &f64v(&x.data),
        cin,
        h,
        w,
        &f64v(&wt.data),
        cout,
        2,
        2,
        2,
        0,
        None,
    );
    let want: Vec<f64> = y
        .iter()
        .enumerate()
        .map(|(i, &v)| bn_ref(v, &bn, i / (ho * wo)))
        .collect();
    let (fw, fb) = fold_batchnorm(&wt, None, &bn, 1).unwrap();
    let got = conv_transpose2d(&x, &fw, Some(&fb), Conv2dParams::new(2, 0)).unwrap();
    assert_close("folded convT", &got.data, &want, 1e-5);
    assert!(
        fold_batchnorm(&wt, None, &bn, 0).is_err(),
        "axis 0 of a convT weight is Cin"
    );

    // Linear + BatchNorm1d over the last axis.
    let xl = rng.tensor(&[6, 4, 10]);
    let wl = rng.tensor(&[cout, 10]);
    let (fw, fb) = fold_batchnorm(&wl, None, &bn, 0).unwrap();
    let got = linear(&xl, &fw, Some(&fb)).unwrap();
    let mut plain = linear(&xl, &wl, None).unwrap();
    let want: Vec<f64> = plain
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| bn_ref(v as f64, &bn, i % cout))
        .collect();
    assert_close("folded linear", &got.data, &want, 1e-5);
    batchnorm_inplace(&mut plain, &bn, 2).unwrap();
    assert_close("batchnorm_inplace last axis", &plain.data, &want, 1e-5);
}

#[test]
fn batchnorm_inplace_and_relu() {
    let mut rng = Rng::new(9);
    let bn = random_bn(&mut rng, 6);
    let mut x = rng.tensor(&[6, 5, 7]);
    let want: Vec<f64> = x
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| bn_ref(v as f64, &bn, i / 35))
        .collect();
    batchnorm_inplace(&mut x, &bn, 0).unwrap();
    assert_close("batchnorm_inplace", &x.data, &want, 1e-6);
    assert!(batchnorm_inplace(&mut x, &bn, 1).is_err());
    let bad = BatchNorm {
        var: vec![1.0; 5],
        ..bn.clone()
    };
    assert!(batchnorm_inplace(&mut x, &bad, 0).is_err());

    let mut v = vec![-1.0, 0.0, 2.5, f32::NAN, -0.0, 1e-30];
    relu_inplace(&mut v);
    assert_eq!(&v[..3], &[0.0, 0.0, 2.5]);
    assert!(v[3].is_nan(), "NaN propagates like torch.relu");
    assert_eq!(v[5], 1e-30);
}

// ---------------------------------------------------------------- vector-Jacobian products

/// `sum(v * f(x))` in f64: the scalar whose gradient the VJP with `dy = v` returns.
fn dot(a: &[f64], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, &y)| x * y as f64).sum()
}

/// Checks `grad` (from the VJP) against central differences of `loss` at `n_probe` coordinates.
fn check_fd(
    what: &str,
    params: &[f32],
    grad: &[f32],
    n_probe: usize,
    loss: &dyn Fn(&[f64]) -> f64,
) {
    assert_eq!(params.len(), grad.len(), "{what}: gradient shape");
    let base = f64v(params);
    let scale = grad.iter().fold(1e-3f64, |m, &g| m.max((g as f64).abs()));
    let step = (params.len() / n_probe).max(1);
    for i in (0..params.len()).step_by(step).chain([params.len() - 1]) {
        let h = 1e-3;
        let mut p = base.clone();
        p[i] += h;
        let up = loss(&p);
        p[i] -= 2.0 * h;
        let down = loss(&p);
        let fd = (up - down) / (2.0 * h);
        let err = (fd - grad[i] as f64).abs();
        assert!(
            err <= 1e-5 * scale + 1e-6,
            "{what}[{i}]: VJP {} vs finite difference {fd}",
            grad[i]
        );
    }
}

#[test]
fn conv2d_vjp_matches_finite_differences() {
    let mut rng = Rng::new(10);
    for &(cin, cout, h, w, k, s, p) in &[
        (3, 4, 7, 6, 3, 1, 1),
        (2, 5, 9, 8, 3, 2, 1),
        (4, 3, 6, 7, 1, 1, 0),
        (3, 2, 8, 9, 4, 2, 1),
        (2, 3, 7, 7, 2, 2, 0),
        (5, 2, 6, 5, 3, 1, 0),
    ] {
        let x = rng.tensor(&[cin, h, w]);
        let wt = rng.tensor(&[cout, cin, k, k]);
        let b = rng.vec(cout);
        let (y0, ho, wo) = conv_ref(
            &f64v(&x.data),
            cin,
            h,
            w,
            &f64v(&wt.data),
            cout,
            k,
            k,
            s,
            p,
            None,
        );
        assert_eq!(y0.len(), cout * ho * wo);
        let v = rng.tensor(&[cout, ho, wo]);
        let params = Conv2dParams::new(s, p);
        let g = conv2d_vjp(&x, &wt, params, &v, true).unwrap();
        let what = format!("conv_vjp {cin}->{cout} {h}x{w} k{k} s{s} p{p}");
        let dx = g.dx.as_ref().unwrap();
        assert_eq!(dx.shape, x.shape);
        assert_eq!(g.dw.shape, wt.shape);
        let wf = f64v(&wt.data);
        let xf = f64v(&x.data);
        check_fd(&format!("{what} dx"), &x.data, &dx.data, 40, &|xp| {
            dot(
                &conv_ref(xp, cin, h, w, &wf, cout, k, k, s, p, None).0,
                &v.data,
            )
        });
        check_fd(&format!("{what} dW"), &wt.data, &g.dw.data, 40, &|wp| {
            dot(
                &conv_ref(&xf, cin, h, w, wp, cout, k, k, s, p, None).0,
                &v.data,
            )
        });
        check_fd(&format!("{what} db"), &b, &g.db, 10, &|bp| {
            dot(
                &conv_ref(&xf, cin, h, w, &wf, cout, k, k, s, p, Some(bp)).0,
                &v.data,
            )
        });
    }
}

#[test]
fn conv_transpose2d_vjp_matches_finite_differences() {
    let mut rng = Rng::new(11);
    for &(cin, cout, h, w, k, s, p) in &[
        (3, 4, 5, 4, 2, 2, 0),
        (2, 3, 4, 5, 4, 4, 0),
        (4, 5, 6, 5, 1, 1, 0),
        (3, 2, 4, 4, 3, 2, 1),
        (2, 3, 5, 3, 3, 1, 0),
    ] {
        let x = rng.tensor(&[cin, h, w]);
        let wt = rng.tensor(&[cin, cout, k, k]);
        let b = rng.vec(cout);
        let (_, ho, wo) = convt_ref(
            &f64v(&x.data),
            cin,
            h,
            w,
            &f64v(&wt.data),
            cout,
            k,
            k,
            s,
            p,
            None,
        );
        let v = rng.tensor(&[cout, ho, wo]);
        let g = conv_transpose2d_vjp(&x, &wt, Conv2dParams::new(s, p), &v, true).unwrap();
        let what = format!("convT_vjp {cin}->{cout} {h}x{w} k{k} s{s} p{p}");
        let (wf, xf) = (f64v(&wt.data), f64v(&x.data));
        let dx = g.dx.as_ref().unwrap();
        assert_eq!(dx.shape, x.shape);
        check_fd(&format!("{what} dx"), &x.data, &dx.data, 30, &|xp| {
            dot(
                &convt_ref(xp, cin, h, w, &wf, cout, k, k, s, p, None).0,
                &v.data,
            )
        });
        check_fd(&format!("{what} dW"), &wt.data, &g.dw.data, 30, &|wp| {
            dot(
                &convt_ref(&xf, cin, h, w, wp, cout, k, k, s, p, None).0,
                &v.data,
            )
        });
        check_fd(&format!("{what} db"), &b, &g.db, 10, &|bp| {
            dot(
                &convt_ref(&xf, cin, h, w, &wf, cout, k, k, s, p, Some(bp)).0,
                &v.data,
            )
        });
    }
}

#[test]
fn linear_vjp_matches_finite_differences() {
    let mut rng = Rng::new(12);
    let (lead, inf, outf) = ([3usize, 7], 10usize, 6usize);
    let x = rng.tensor(&[lead[0], lead[1], inf]);
    let wt = rng.tensor(&[outf, inf]);
    let b = rng.vec(outf);
    let v = rng.tensor(&[lead[0], lead[1], outf]);
    let rows = lead[0] * lead[1];
    let fwd = |xp: &[f64], wp: &[f64], bp: &[f64]| -> Vec<f64> {
        let mut y = vec![0f64; rows * outf];
        for r in 0..rows {
            for o in 0..outf {
                y[r * outf + o] = bp[o]
                    + (0..inf)
                        .map(|i| xp[r * inf + i] * wp[o * inf + i])
                        .sum::<f64>();
            }
        }
        y
    };
    let g = linear_vjp(&x, &wt, &v, true).unwrap();
    let (xf, wf, bf) = (f64v(&x.data), f64v(&wt.data), f64v(&b));
    let dx = g.dx.as_ref().unwrap();
    assert_eq!(dx.shape, x.shape);
    check_fd("linear dx", &x.data, &dx.data, 50, &|xp| {
        dot(&fwd(xp, &wf, &bf), &v.data)
    });
    check_fd("linear dW", &wt.data, &g.dw.data, 50, &|wp| {
        dot(&fwd(&xf, wp, &bf), &v.data)
    });
    check_fd("linear db", &b, &g.db, 6, &|bp| {
        dot(&fwd(&xf, &wf, bp), &v.data)
    });
    assert!(
        linear_vjp(&x, &wt, &rng.tensor(&[rows, outf]), true).is_err(),
        "dy shape"
    );
}

#[test]
fn vjps_on_larger_maps_match_the_adjoint_identity() {
    // <conv(x), v> == <x, dx> and == <W, dW> for a linear conv without bias (exact in f64;
    // here a check of the banded, multi-threaded paths on maps too big for finite differences).
    let mut rng = Rng::new(13);
    for &(cin, cout, h, w, k, s, p) in &[(16, 24, 40, 52, 3, 1, 1), (12, 20, 50, 34, 3, 2, 1)] {
        let x = rng.tensor(&[cin, h, w]);
        let wt = rng.tensor(&[cout, cin, k, k]);
        let (y, ho, wo) = conv_ref(
            &f64v(&x.data),
            cin,
            h,
            w,
            &f64v(&wt.data),
            cout,
            k,
            k,
            s,
            p,
            None,
        );
        let v = rng.tensor(&[cout, ho, wo]);
        let g = conv2d_vjp(&x, &wt, Conv2dParams::new(s, p), &v, true).unwrap();
        let lhs = dot(&y, &v.data);
        let via_dx = dot(&f64v(&x.data), &g.dx.unwrap().data);
        let via_dw = dot(&f64v(&wt.data), &g.dw.data);
        let tol = 1e-5 * y.iter().map(|a| a.abs()).sum::<f64>();
        assert!(
            (lhs - via_dx).abs() <= tol,
            "<y,v> {lhs} vs <x,dx> {via_dx}"
        );
        assert!(
            (lhs - via_dw).abs() <= tol,
            "<y,v> {lhs} vs <W,dW> {via_dw}"
        );
    }
}

#[test]
fn relu_vjp_masks_by_output() {
    let mut dy = vec![1.0, 2.0, 3.0, 4.0];
    relu_vjp_inplace(&mut dy, &[0.5, 0.0, -1.0, f32::NAN]);
    assert_eq!(dy, vec![1.0, 0.0, 0.0, 0.0]);
}
