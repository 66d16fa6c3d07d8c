//! `pruneview synth`, `eval` and `report` end to end: synthetic scenes in KITTI layout, the
//! KITTI PointPillars reference model (dense and masked) evaluated on them, and the pruning
//! report of the bundled demo model on the bundled scans.

use std::path::PathBuf;
use std::process::Output;

use super::util::{TempDir, pruneview, shared};
use pruneview::eval::EvalReport;
use pruneview::io::{OutTensor, write_safetensors};
use pruneview::model::Weights;

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "pruneview failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn synth_then_eval_dense_and_masked() {
    let dir = TempDir::new("clidata");
    let data = dir.join("synth");
    let d = data.to_string_lossy().into_owned();
    ok(&pruneview(&[
        "synth", "--out", &d, "--count", "3", "--seed", "7",
    ]));
    for sub in ["velodyne", "label_2", "calib"] {
        assert_eq!(
            std::fs::read_dir(data.join(sub)).expect(sub).count(),
            3,
            "{sub}"
        );
    }
    let config = shared().join("reference/cfgs/kitti_models/pointpillar.yaml");
    let weights = shared().join("reference/pointpillar_kitti_000008/weights.safetensors");
    let (c, w) = (config.to_string_lossy(), weights.to_string_lossy());
    let dense = ok(&pruneview(&[
        "eval",
        "--config",
        &c,
        "--weights",
        &w,
        "--dataset",
        &d,
        "--json",
    ]));
    let report = EvalReport::from_json(&dense).expect("JSON report");
    assert_eq!(report.frames, 3);
    // Masks apply before the run: an all-zero mask on the classifier leaves only its biases
    // (a model that cannot localise anything); the table form is printed.
    let wts = Weights::open(&weights).expect("weights");
    let cls = wts
        .tensor_any_shape("dense_head.conv_cls.weight")
        .expect("cls");
    let masks = dir.join("masks.safetensors");
    write_safetensors(
        &masks,
        &[OutTensor {
            name: "dense_head.conv_cls.weight".into(),
            dtype: safetensors::Dtype::U8,
            shape: cls.shape.clone(),
            bytes: vec![0; cls.numel()],
        }],
        None,
        &[],
    )
    .expect("masks");
    let o = pruneview(&[
        "eval",
        "--config",
        &c,
        "--weights",
        &w,
        "--dataset",
        &d,
        "--masks",
        &masks.to_string_lossy(),
    ]);
    let table = ok(&o);
    assert!(table.contains("KITTI AP (3 frames"), "{table}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 layers masked"));
}

#[test]
fn synth_fov_only_keeps_the_camera_view() {
    let dir = TempDir::new("clifov");
    let (full, fov) = (dir.join("full"), dir.join("fov"));
    for (out, extra) in [(&full, None), (&fov, Some("--fov-only"))] {
        let o = out.to_string_lossy().into_owned();
        let mut args = vec!["synth", "--out", &o, "--count", "1", "--seed", "3"];
        args.extend(extra);
        ok(&pruneview(&args));
    }
    let size = |d: &PathBuf| {
        std::fs::metadata(d.join("velodyne/000000.bin"))
            .expect("bin")
            .len()
    };
    assert!(
        size(&fov) * 3 < size(&full),
        "{} vs {}",
        size(&fov),
        size(&full)
    );
    assert_eq!(
        std::fs::read(full.join("label_2/000000.txt")).expect("labels"),
        std::fs::read(fov.join("label_2/000000.txt")).expect("labels")
    );
}

#[test]
fn report_writes_table_json_and_plot() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let scans = root.join("assets/scans/synthetic");
    let dir = TempDir::new("clireport");
    let split = dir.join("split.txt");
    std::fs::write(&split, "000000\n000001\n000002\n000003\n").expect("split");
    let calib: Vec<String> = (60..62)
        .map(|i| {
            scans
                .join(format!("velodyne/{i:06}.bin"))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let out = dir.join("report");
    let weights = root.join("assets/demo_pointpillar.safetensors");
    let args = |dataset: &str| {
        vec![
            "report".to_string(),
            "--weights".into(),
            weights.to_string_lossy().into_owned(),
            "--scans".into(),
            calib[0].clone(),
            calib[1].clone(),
            "--probes".into(),
            "1".into(),
            "--levels".into(),
            "11".into(),
            "--dataset".into(),
            dataset.into(),
            "--split".into(),
            split.to_string_lossy().into_owned(),
            "--keeps".into(),
            "1,0.5".into(),
            "--methods".into(),
            "dp,uniform".into(),
            "--out".into(),
            out.to_string_lossy().into_owned(),
        ]
    };
    // A missing dataset is named, and nothing is written.
    let missing = dir.join("no-such-set");
    let a = args(&missing.to_string_lossy());
    let o = pruneview(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no-such-set"), "{err}");
    assert!(!out.exists());

    let a = args(&scans.to_string_lossy());
    let md = ok(&pruneview(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    assert!(md.contains("| 50% (2.00x) |"), "{md}");
    for f in ["report.md", "report.json", "ap_vs_flops.png", "curves.json"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("json"))
            .expect("parse");
    assert_eq!(json["rows"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["eval_frames"], 4);
}
