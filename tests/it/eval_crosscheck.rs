//! `pruneview::eval` against the reference KITTI evaluator on generated scenes.
//!
//! The fixtures under `tests/data/eval/<case>/` were written by `tools/kitti_eval_crosscheck.py`:
//! KITTI label and result files (mixed classes, Van / Person_sitting / Truck neighbours, DontCare
//! regions, random truncation, occlusion and 2-D heights, perturbed detections with random
//! scores, misses, spurious and mislabelled detections) and the APs that
//! `kitti_object_eval_python` (OpenPCDet's evaluator, here the identical copy in the mmdet3d
//! 1.4.0 wheel, run on CPU with `NUMBA_ENABLE_CUDASIM=1`) computes for them. No Python at test
//! time.

use std::path::PathBuf;

use super::util::TempDir;
use pruneview::eval::{Difficulty, KittiClass, Metric, evaluate, frame_ids, load_frames};
use serde_json::Value;

fn case_dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/eval")
        .join(case)
}

fn check_case(case: &str) {
    let dir = case_dir(case);
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let ids = frame_ids(dir.join("label_2")).unwrap();
    assert_eq!(ids.len() as u64, expected["frames"].as_u64().unwrap());
    let (gt, dt) = load_frames(dir.join("label_2"), dir.join("results"), &ids).unwrap();
    let report = evaluate(&gt, &dt, &KittiClass::DEFAULT).unwrap();

    let mut failures = Vec::new();
    for (key, n) in expected["num_valid_gt"].as_object().unwrap() {
        let (class, diff) = key.split_once('/').unwrap();
        let class: KittiClass = class.parse().unwrap();
        let diff = Difficulty::ALL
            .into_iter()
            .find(|d| d.name() == diff)
            .unwrap();
        let got = report.get(class, Metric::Bev, diff).unwrap().num_valid_gt;
        if got as u64 != n.as_u64().unwrap() {
            failures.push(format!("{key}: {got} valid objects, reference {n}"));
        }
    }
    let results = expected["results"].as_array().unwrap();
    assert_eq!(results.len(), 27);
    for e in results {
        let class: KittiClass = e["class"].as_str().unwrap().parse().unwrap();
        let metric = Metric::ALL
            .into_iter()
            .find(|m| m.name() == e["metric"].as_str().unwrap())
            .unwrap();
        let diff = Difficulty::ALL
            .into_iter()
            .find(|d| d.name() == e["difficulty"].as_str().unwrap())
            .unwrap();
        let got = report.get(class, metric, diff).unwrap();
        for (name, ours, theirs) in [
            ("R11", got.ap_r11, e["ap_r11"].as_f64().unwrap()),
            ("R40", got.ap_r40, e["ap_r40"].as_f64().unwrap()),
        ] {
            if (ours - theirs).abs() > 1e-6 {
                failures.push(format!(
                    "{class} {} {} {name}: ours {ours:.6}, reference {theirs:.6}",
                    metric.name(),
                    diff.name()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{case}: {} mismatches\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        report.to_table()
    );
}

#[test]
fn mixed_small_noise_matches_reference() {
    check_case("mixed_small_noise");
}

#[test]
fn noisy_many_fp_matches_reference() {
    check_case("noisy_many_fp");
}

#[test]
fn occluded_perturbed_matches_reference() {
    check_case("occluded_perturbed");
}

/// `eval --results DIR --labels DIR --official` prints `get_official_eval_result`'s text:
/// the same lines as the reference's (`official.txt`, written by
/// `tools/kitti_official_text.py`), every value within 0.01 (labels are parsed as float32
/// here, float64 there), aos included.
#[test]
fn official_text_matches_the_reference_layout_and_values() {
    for case in ["mixed_small_noise", "noisy_many_fp", "occluded_perturbed"] {
        let dir = case_dir(case);
        let expected = std::fs::read_to_string(dir.join("official.txt")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pruneview"))
            .args(["eval", "--results"])
            .arg(dir.join("results"))
            .arg("--labels")
            .arg(dir.join("label_2"))
            .arg("--official")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ours = String::from_utf8(out.stdout).unwrap();
        let (ours, theirs): (Vec<&str>, Vec<&str>) =
            (ours.lines().collect(), expected.lines().collect());
        assert_eq!(
            ours.len(),
            theirs.len(),
            "{case}: line count\n{}",
            ours.join("\n")
        );
        assert!(
            theirs.iter().any(|l| l.starts_with("aos  AP:")),
            "{case}: no aos lines"
        );
        for (a, b) in ours.iter().zip(&theirs) {
            let split = |l: &str| -> (String, Vec<f64>) {
                let (head, values) = l.split_once("AP:").unwrap_or((l, ""));
                let v = values
                    .split(", ")
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().unwrap())
                    .collect();
                (head.to_string(), v)
            };
            let ((ha, va), (hb, vb)) = (split(a), split(b));
            assert_eq!(ha, hb, "{case}: `{a}` vs `{b}`");
            assert_eq!(va.len(), vb.len(), "{case}: `{a}` vs `{b}`");
            for (x, y) in va.iter().zip(&vb) {
                assert!((x - y).abs() <= 0.01, "{case}: `{a}` vs `{b}`");
            }
        }
    }
}

/// A result folder is a folder of this split's frames: one without any of them is refused,
/// and a frame without a file counts as a frame without detections.
#[test]
fn result_folders_with_no_frames_are_refused_and_missing_files_are_empty() {
    let dir = case_dir("mixed_small_noise");
    let ids = frame_ids(dir.join("label_2")).unwrap();
    let e = load_frames(dir.join("label_2"), dir.join("label_2/none"), &ids).unwrap_err();
    assert!(e.to_string().contains("holds none of the frames"), "{e}");
    let scratch = TempDir::new("results");
    std::fs::copy(
        dir.join("results").join(format!("{}.txt", ids[0])),
        scratch.join(format!("{}.txt", ids[0])),
    )
    .unwrap();
    let (gt, dt) = load_frames(dir.join("label_2"), &scratch, &ids).unwrap();
    assert_eq!(gt.len(), ids.len());
    assert!(!dt[0].is_empty() && dt[1..].iter().all(Vec::is_empty));
}
