//! ResidualCoder decoding, limit_period and the direction-classifier correction.

use std::f32::consts::PI;

use pruneview::detect::box_coder::{
    CoderError, DirClassifier, ResidualCoder, argmax_first, limit_period,
};

fn close(a: f32, b: f64, tol: f64) -> bool {
    (a as f64 - b).abs() <= tol
}

#[test]
fn decodes_a_hand_computed_anchor_prediction_pair() {
    // KITTI Car anchor at (10, 2, -1), rotation 1.57.
    let anchor = [10.0, 2.0, -1.0, 3.9, 1.6, 1.56, 1.57];
    let ln2 = std::f32::consts::LN_2;
    let enc = [0.1, -0.2, 0.5, ln2, 0.0, -ln2, 0.3];
    let coder = ResidualCoder::new(7, false).unwrap();
    assert_eq!(coder.code_size(), 7);
    let mut out = [0f32; 7];
    coder.decode_one(&enc, &anchor, &mut out);
    // diagonal = sqrt(3.9² + 1.6²) = sqrt(17.77) = 4.2154477816...
    let diag = 17.77f64.sqrt();
    let want = [
        10.0 + 0.1 * diag, // 10.42154478
        2.0 - 0.2 * diag,  // 1.15691044
        -1.0 + 0.5 * 1.56, // -0.22
        7.8,               // exp(ln 2) · 3.9
        1.6,               // exp(0) · 1.6
        0.78,              // exp(−ln 2) · 1.56
        1.87,              // 0.3 + 1.57
    ];
    for k in 0..7 {
        assert!(
            close(out[k], want[k], 2e-6),
            "col {k}: {} vs {}",
            out[k],
            want[k]
        );
    }
}

#[test]
fn extra_columns_pass_through_as_t_plus_a() {
    // code_size 9 (velocity): cgs = t + a for as many extras as both sides have.
    let coder = ResidualCoder::new(9, false).unwrap();
    let anchor = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.5, -0.25];
    let enc = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.5, 2.0];
    assert_eq!(coder.box_cols(9), 9);
    let mut out = [0f32; 9];
    coder.decode_one(&enc, &anchor, &mut out);
    assert_eq!(&out[7..], &[2.0, 1.75]);
    assert_eq!(&out[..7], &[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]);
    // 7-column anchors: zip() stops at the shorter side, so the box has 7 columns.
    assert_eq!(coder.box_cols(7), 7);
    let boxes = coder.decode(&enc, &anchor[..7], 7).unwrap();
    assert_eq!(boxes.len(), 7);
}

#[test]
fn sincos_heading_decodes_with_atan2() {
    let coder = ResidualCoder::new(7, true).unwrap();
    assert_eq!(coder.code_size(), 8);
    let anchor = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.57];
    let enc = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, -0.2];
    let mut out = [0f32; 7];
    coder.decode_one(&enc, &anchor, &mut out);
    let want = (1.57f64.sin() - 0.2).atan2(1.57f64.cos() + 0.1); // 1.44544...
    assert!(close(out[6], want, 1e-6), "{} vs {want}", out[6]);
}

#[test]
fn batch_decode_equals_row_decode_and_checks_shapes() {
    let coder = ResidualCoder::new(7, false).unwrap();
    let n = 10_007; // more than one parallel chunk, not a multiple of it
    let anchors: Vec<f32> = (0..n * 7)
        .map(|i| ((i * 37 % 101) as f32) * 0.05 + 0.1)
        .collect();
    let enc: Vec<f32> = (0..n * 7)
        .map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.01)
        .collect();
    let boxes = coder.decode(&enc, &anchors, 7).unwrap();
    assert_eq!(boxes.len(), n * 7);
    for r in [0, 1, 4095, 4096, 8191, 8192, n - 1] {
        let mut one = [0f32; 7];
        coder.decode_one(&enc[r * 7..r * 7 + 7], &anchors[r * 7..r * 7 + 7], &mut one);
        assert_eq!(&boxes[r * 7..r * 7 + 7], &one, "row {r}");
    }
    assert_eq!(ResidualCoder::new(6, false), Err(CoderError::CodeSize(6)));
    assert_eq!(
        coder.decode(&enc, &anchors, 6),
        Err(CoderError::AnchorColumns(6))
    );
    assert_eq!(
        coder.decode(&enc, &anchors[..20], 7),
        Err(CoderError::RaggedAnchors { len: 20, cols: 7 })
    );
    assert_eq!(
        coder.decode(&enc[..14], &anchors[..7], 7),
        Err(CoderError::EncodingCount {
            anchors: 1,
            code_size: 7,
            expected: 7,
            got: 14
        })
    );
}

#[test]
fn limit_period_edge_values() {
    // Offset 0: maps into [0, period].
    assert_eq!(limit_period(0.0, 0.0, PI), 0.0);
    assert_eq!(limit_period(PI, 0.0, PI), 0.0);
    assert_eq!(limit_period(2.0 * PI, 0.0, PI), 0.0);
    assert!(close(
        limit_period(-7.0, 0.0, PI),
        -7.0 + 3.0 * std::f64::consts::PI,
        2e-6
    ));
    assert!(close(limit_period(1.0, 0.0, PI), 1.0, 0.0));
    // A tiny negative value lands on the *upper* end: −1e-8 + π rounds to π in f32.
    assert_eq!(limit_period(-1e-8, 0.0, PI), PI);
    // Offset 0.5, period 2π: maps into [−π, π); +π goes to −π, −π stays.
    let two_pi = 2.0 * PI;
    assert_eq!(limit_period(-PI, 0.5, two_pi), -PI);
    assert_eq!(limit_period(PI, 0.5, two_pi), -PI);
    assert!(close(
        limit_period(1.5 * PI, 0.5, two_pi),
        -std::f64::consts::FRAC_PI_2,
        1e-6
    ));
    assert!(limit_period(f32::NAN, 0.0, PI).is_nan());
}

#[test]
fn direction_correction_hand_values() {
    let dir = DirClassifier::KITTI_POINTPILLARS;
    assert_eq!(dir.period(), PI);
    // rg = 3.0: limit_period(3.0 − 0.78539, 0, π) = 2.21461; + 0.78539 = 3.0; + π·label.
    assert!(close(dir.correct(3.0, 0), 3.0, 1e-6));
    assert!(close(dir.correct(3.0, 1), 3.0 + std::f64::consts::PI, 1e-6));
    // rg = −0.5: −1.28539 wraps to −1.28539 + π = 1.85620; + 0.78539 = 2.64159.
    assert!(close(
        dir.correct(-0.5, 0),
        -0.5 + std::f64::consts::PI,
        1e-6
    ));
    assert!(close(
        dir.correct(-0.5, 1),
        -0.5 + 2.0 * std::f64::consts::PI,
        1e-6
    ));
    // Labels from logits: first maximum wins ties, NaN wins outright (torch.max).
    assert_eq!(argmax_first(&[0.2, 0.2]), 0);
    assert_eq!(argmax_first(&[0.1, 0.3]), 1);
    assert_eq!(argmax_first(&[0.1, f32::NAN, 5.0]), 1);
    assert_eq!(argmax_first(&[]), 0);
    assert!(close(
        dir.apply(3.0, &[-1.0, 2.0]),
        3.0 + std::f64::consts::PI,
        1e-6
    ));
}

#[test]
fn direction_correction_range_and_congruence() {
    let dir = DirClassifier::KITTI_POINTPILLARS;
    let lo = dir.offset as f64;
    for i in 0..20_000 {
        let rg = -10.0 + 20.0 * (i as f32) / 20_000.0;
        for label in 0..2 {
            let r = dir.correct(rg, label) as f64;
            // In [offset + π·label, offset + π·(label + 1)], up to f32 rounding at the top.
            let base = lo + std::f64::consts::PI * label as f64;
            assert!(
                r >= base - 1e-6 && r <= base + std::f64::consts::PI + 1e-5,
                "{rg} {label} -> {r}"
            );
            // Same axis as rg: differs by a multiple of π.
            let k = (r - rg as f64) / std::f64::consts::PI;
            assert!((k - k.round()).abs() < 1e-5, "{rg} -> {r}");
        }
    }
    // Three bins: period 2π/3 computed in f64, then rounded to f32.
    let three = DirClassifier {
        offset: 0.0,
        limit_offset: 0.5,
        num_bins: 3,
    };
    assert_eq!(three.period(), (2.0 * std::f64::consts::PI / 3.0) as f32);
}
