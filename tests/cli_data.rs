//! `pruneview synth` and `pruneview eval` end to end: synthetic scenes in KITTI layout, then
//! the KITTI PointPillars reference model (dense and masked) evaluated on them.

use std::path::PathBuf;
use std::process::{Command, Output};

use pruneview::eval::EvalReport;
use pruneview::io::{OutTensor, write_safetensors};
use pruneview::model::Weights;

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pruneview"))
        .args(args)
        .output()
        .expect("run pruneview")
}

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
    let dir = std::env::temp_dir().join(format!("pruneview-clidata-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("synth");
    let d = data.to_string_lossy().into_owned();
    ok(&run(&["synth", "--out", &d, "--count", "3", "--seed", "7"]));
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
    let dense = ok(&run(&[
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
    let o = run(&[
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
    let _ = std::fs::remove_dir_all(&dir);
}
