//! The `pruneview` command line: the `detect` contract (text, JSON, `--dump` in the
//! reference layout) and clear errors for bad input, with nothing overwritten.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::util::{Cli, TempDir, kitti, pruneview, shared};
use pruneview::io::{OutTensor, write_safetensors};
use pruneview::model::Weights;

fn pp_config() -> PathBuf {
    shared().join("reference/cfgs/kitti_models/pointpillar.yaml")
}

fn pp_weights() -> PathBuf {
    shared().join("reference/pointpillar_kitti_000008/weights.safetensors")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `detect` of a model on one scan.
fn detect_cli(config: &Path, weights: &Path, scan: &Path) -> Cli {
    Cli::new("detect")
        .model(Some(config), weights)
        .flag("--scan", scan)
}

fn detect_kitti(extra: &[&str]) -> Output {
    detect_cli(&pp_config(), &pp_weights(), &kitti("velodyne/000008.bin"))
        .flag("--fov-calib", kitti("calib/000008.txt"))
        .flag("--image-size", "375x1242")
        .args(extra)
        .run()
}

#[test]
fn detect_prints_kitti_lines_json_and_dumps_reference_layout() {
    let out = detect_kitti(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 300, "{} lines", lines.len());
    // KITTI result lines: class, 14 numbers, score.
    for l in &lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f.len(), 16, "{l}");
        assert!(["Car", "Pedestrian", "Cyclist"].contains(&f[0]), "{l}");
    }

    let out = detect_kitti(&["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["points"], 17_221);
    assert_eq!(doc["pillars"], 3_941);
    assert_eq!(doc["detections"].as_array().unwrap().len(), lines.len());

    let dir = TempDir::new("dump");
    let dump = dir.join("out.safetensors");
    let out = detect_kitti(&["--dump", s(&dump)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ours = Weights::open(&dump).unwrap();
    let golden =
        Weights::open(&shared().join("reference/pointpillar_kitti_000008/golden.safetensors"))
            .unwrap();
    for key in [
        "voxels",
        "voxel_num_points",
        "voxel_coords",
        "pillar_features",
        "spatial_features_2d.sub8",
        "raw.cls_preds",
        "raw.box_preds",
        "raw.dir_cls_preds",
    ] {
        assert_eq!(ours.shape(key), golden.shape(key), "{key}");
    }
    assert_eq!(ours.shape("pred_boxes").unwrap()[0], lines.len());
    assert_eq!(
        ours.raw("pred_labels").unwrap().0,
        golden.raw("pred_labels").unwrap().0
    );
}

#[test]
fn help_has_examples() {
    for args in [&["--help"][..], &["detect", "--help"], &["bench", "--help"]] {
        let out = pruneview(args);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example"), "{args:?}: {text}");
    }
}

#[test]
fn truncated_weights_name_the_file() {
    let dir = TempDir::new("trunc");
    let bytes = std::fs::read(pp_weights()).unwrap();
    let bad = dir.join("truncated.safetensors");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let out = detect_kitti_with_weights(&bad);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("truncated.safetensors") && err.contains("truncated"),
        "{err}"
    );
}

fn detect_kitti_with_weights(w: &Path) -> Output {
    let (c, scan) = (pp_config(), kitti("velodyne/000008.bin"));
    detect_cli(&c, w, &scan).run()
}

/// Every tensor of the reference weights, as stored.
fn reference_tensors() -> Vec<OutTensor> {
    let w = Weights::open(&pp_weights()).unwrap();
    w.keys()
        .into_iter()
        .map(|k| {
            let (dtype, shape, bytes) = w.raw(&k).unwrap();
            OutTensor {
                name: k,
                dtype,
                shape: shape.to_vec(),
                bytes: bytes.to_vec(),
            }
        })
        .collect()
}

/// Rewrites the reference weights with `edit` applied to the tensor list.
fn edited_weights(dir: &Path, name: &str, edit: impl Fn(&mut Vec<OutTensor>)) -> PathBuf {
    let mut tensors = reference_tensors();
    edit(&mut tensors);
    let path = dir.join(name);
    write_safetensors(&path, &tensors, None, &[]).unwrap();
    path
}

#[test]
fn wrong_shape_and_missing_key_are_named() {
    let dir = TempDir::new("shape");
    let key = "backbone_2d.blocks.1.4.weight";
    let bad = edited_weights(&dir, "shape.safetensors", |t| {
        let x = t.iter_mut().find(|x| x.name == key).unwrap();
        x.shape = vec![128, 64, 3, 6];
    });
    let err = stderr(&detect_kitti_with_weights(&bad));
    assert!(
        err.contains("shape.safetensors") && err.contains(key),
        "{err}"
    );
    assert!(
        err.contains("[128, 128, 3, 3]") && err.contains("[128, 64, 3, 6]"),
        "{err}"
    );

    let missing = edited_weights(&dir, "missing.safetensors", |t| t.retain(|x| x.name != key));
    let err = stderr(&detect_kitti_with_weights(&missing));
    assert!(
        err.contains("missing.safetensors") && err.contains("missing tensor") && err.contains(key),
        "{err}"
    );

    // A negative BatchNorm variance would make every output NaN: refused at load.
    let bn = "backbone_2d.blocks.0.2.running_var";
    let negative = edited_weights(&dir, "negative.safetensors", |t| {
        let x = t.iter_mut().find(|x| x.name == bn).unwrap();
        let mut v: Vec<f32> = x
            .bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        v[3] = -0.5;
        *x = OutTensor::f32(bn, &x.shape.clone(), &v);
    });
    let out = detect_kitti_with_weights(&negative);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("negative.safetensors") && err.contains(bn) && err.contains("channel 3"),
        "{err}"
    );

    let extra = edited_weights(&dir, "extra.safetensors", |t| {
        t.push(OutTensor::f32("roi_head.fc.weight", &[2], &[1.0, 2.0]))
    });
    let out = detect_kitti_with_weights(&extra);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not used by the model: roi_head.fc.weight"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn f16_weights_load() {
    let dir = TempDir::new("f16");
    let half = edited_weights(&dir, "half.safetensors", |t| {
        for x in t.iter_mut().filter(|x| x.dtype == safetensors::Dtype::F32) {
            x.bytes = x
                .bytes
                .chunks_exact(4)
                .flat_map(|b| {
                    half::f16::from_f32(f32::from_le_bytes(b.try_into().unwrap())).to_le_bytes()
                })
                .collect();
            x.dtype = safetensors::Dtype::F16;
        }
    });
    let out = detect_kitti_with_weights(&half);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn bad_scans_are_reported() {
    let dir = TempDir::new("scans");
    let (c, w) = (pp_config(), pp_weights());
    // Not a whole number of 16-byte records.
    let odd = dir.join("odd.bin");
    std::fs::write(&odd, vec![0u8; 30]).unwrap();
    let out = detect_cli(&c, &w, &odd).run();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("odd.bin"), "{}", stderr(&out));
    // Empty.
    let empty = dir.join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let out = detect_cli(&c, &w, &empty).run();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("empty.bin") && err.contains("no points"),
        "{err}"
    );
    // NaN points are dropped and counted; the rest runs.
    let mut bytes = std::fs::read(kitti("velodyne/000008.bin")).unwrap();
    bytes[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    bytes[16..20].copy_from_slice(&f32::INFINITY.to_le_bytes());
    let nan = dir.join("nan.bin");
    std::fs::write(&nan, &bytes).unwrap();
    let out = detect_cli(&c, &w, &nan).run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("dropped 2 points"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_head_in_yaml_is_named() {
    let dir = TempDir::new("yaml");
    // Keep the OpenPCDet layout so _BASE_CONFIG_ still resolves.
    let cfgs = dir.join("cfgs");
    std::fs::create_dir_all(cfgs.join("kitti_models")).unwrap();
    std::fs::create_dir_all(cfgs.join("dataset_configs")).unwrap();
    let base = shared().join("reference/cfgs/dataset_configs/kitti_dataset.yaml");
    std::fs::copy(&base, cfgs.join("dataset_configs/kitti_dataset.yaml")).unwrap();
    let text = std::fs::read_to_string(pp_config())
        .unwrap()
        .replace("AnchorHeadSingle", "PointHeadBox");
    let cfg = cfgs.join("kitti_models/odd_head.yaml");
    std::fs::write(&cfg, text).unwrap();
    let (w, scan) = (pp_weights(), kitti("velodyne/000008.bin"));
    let out = detect_cli(&cfg, &w, &scan).run();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("odd_head.yaml") && err.contains("PointHeadBox"),
        "{err}"
    );
}

#[test]
fn dump_never_overwrites_an_input() {
    let dir = TempDir::new("overwrite");
    let scan = dir.join("scan.bin");
    std::fs::copy(kitti("velodyne/000008.bin"), &scan).unwrap();
    let before = std::fs::read(&scan).unwrap();
    let (c, w) = (pp_config(), pp_weights());
    let out = detect_cli(&c, &w, &scan).args(&["--dump", s(&scan)]).run();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("refusing to overwrite"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&scan).unwrap(), before);
}

#[test]
fn config_embedded_in_safetensors_metadata_is_used() {
    let dir = TempDir::new("embedded");
    let cfg = pruneview::model::config::load_config(Some(&pp_config()), None).unwrap();
    let tensors = reference_tensors();
    let meta = std::collections::HashMap::from([(
        pruneview::model::config::CONFIG_METADATA_KEY.to_string(),
        cfg.to_json(),
    )]);
    let single = dir.join("model.safetensors");
    write_safetensors(&single, &tensors, Some(meta), &[]).unwrap();
    let scan = kitti("velodyne/000008.bin");
    let with_yaml = detect_kitti_with_weights(&pp_weights());
    let embedded = pruneview(&["detect", "--weights", s(&single), "--scan", s(&scan)]);
    assert!(embedded.status.success(), "{}", stderr(&embedded));
    assert_eq!(embedded.stdout, with_yaml.stdout);
}

/// On a machine without a display (a server, CI), opening the app fails at once with a
/// message that points to the command line, instead of hanging or crashing.
#[test]
fn the_app_without_a_display_says_so() {
    let home = TempDir::new("nodisplay");
    let out = Command::new(env!("CARGO_BIN_EXE_pruneview"))
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env("HOME", &*home)
        .env("XDG_DATA_HOME", &*home)
        .output()
        .expect("run pruneview");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open the window"), "{err}");
    assert!(err.contains("pruneview --help"), "{err}");
}

/// A reader that closes the pipe early gets a quiet exit; a full disk behind stdout is an
/// error with its cause (neither is a panic, exit 101).
#[cfg(unix)]
#[test]
fn closed_or_full_stdout_is_handled() {
    use std::process::Stdio;
    let args = [
        "detect",
        "--config",
        s(&pp_config()),
        "--weights",
        s(&pp_weights()),
        "--scan",
        s(&kitti("velodyne/000008.bin")),
    ]
    .map(str::to_string);
    let mut child = Command::new(env!("CARGO_BIN_EXE_pruneview"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // closed before the first line is written
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let full = std::fs::File::create("/dev/full").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pruneview"))
        .args(&args)
        .stdout(full)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write to stdout"), "{err}");
}

/// Config values and inputs that would ask for unbounded memory are refused up front, with
/// the file and the value named and exit code 1.
#[cfg(unix)]
#[test]
fn sizes_from_configs_and_inputs_are_bounded() {
    let dir = TempDir::new("bounds");
    let cfgs = dir.join("cfgs");
    std::fs::create_dir_all(cfgs.join("kitti_models")).unwrap();
    std::fs::create_dir_all(cfgs.join("dataset_configs")).unwrap();
    let base = shared().join("reference/cfgs/dataset_configs/kitti_dataset.yaml");
    std::fs::copy(&base, cfgs.join("dataset_configs/kitti_dataset.yaml")).unwrap();
    let yaml = std::fs::read_to_string(pp_config()).unwrap();
    let (w, scan) = (pp_weights(), kitti("velodyne/000008.bin"));
    let detect =
        |config: &Path, weights: &Path, scan: &Path| detect_cli(config, weights, scan).run();
    let cases: [(&str, &str, &str, &str); 4] = [
        (
            "points.yaml",
            "MAX_POINTS_PER_VOXEL: 32",
            "MAX_POINTS_PER_VOXEL: 1000000000",
            "1000000000",
        ),
        (
            "voxel.yaml",
            "VOXEL_SIZE: [0.16, 0.16, 4]",
            "VOXEL_SIZE: [0.0001, 0.0001, 4]",
            "691200 cells along axis 0",
        ),
        (
            "voxel_01.yaml",
            "VOXEL_SIZE: [0.16, 0.16, 4]",
            "VOXEL_SIZE: [0.01, 0.01, 4]",
            "bird's-eye grid",
        ),
        (
            "range.yaml",
            "POINT_CLOUD_RANGE: [0, -39.68, -3, 69.12, 39.68, 1]",
            "POINT_CLOUD_RANGE: [-1e9, -1e9, -3, 1e9, 1e9, 1]",
            "cells along axis",
        ),
    ];
    for (name, from, to, expect) in cases {
        assert!(yaml.contains(from), "{from}");
        let path = cfgs.join("kitti_models").join(name);
        std::fs::write(&path, yaml.replace(from, to)).unwrap();
        let out = detect(&path, &w, &scan);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(name) && err.contains(expect), "{name}: {err}");
    }
    // Devices and folders where a file is expected.
    let zero = Path::new("/dev/zero");
    let folder_scan = dir.join("folder.bin");
    std::fs::create_dir_all(&folder_scan).unwrap();
    for (out, named) in [
        (detect(zero, &w, &scan), "/dev/zero"),
        (
            detect_cli(&pp_config(), &w, Path::new("/dev/zero"))
                .args(&["--format", "kitti"])
                .run(),
            "not a regular file",
        ),
        (detect(&pp_config(), &dir, &scan), "is a folder"),
        (detect(&pp_config(), &w, &folder_scan), "is a folder"),
    ] {
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(named), "{err}");
    }
    let out = pruneview(&[
        "curves",
        "--weights",
        s(&w),
        "--config",
        s(&pp_config()),
        "--scans",
        s(&scan),
        "--levels",
        "10000000",
        "--out",
        s(&dir.join("c.json")),
    ]);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("10000000 levels"),
        "{err}"
    );
}

/// `_BASE_CONFIG_` resolves as OpenPCDet's does (relative to the folder holding `cfgs/`):
/// absolute and `..` paths, non-mapping bases and unknown model names are refused by name.
#[test]
fn base_configs_and_model_names_are_checked() {
    let dir = TempDir::new("bases");
    let models = dir.join("cfgs/kitti_models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::create_dir_all(dir.join("cfgs/dataset_configs")).unwrap();
    let base = shared().join("reference/cfgs/dataset_configs/kitti_dataset.yaml");
    std::fs::copy(&base, dir.join("cfgs/dataset_configs/kitti_dataset.yaml")).unwrap();
    std::fs::write(dir.join("cfgs/dataset_configs/list.yaml"), "- 1\n- 2\n").unwrap();
    let yaml = std::fs::read_to_string(pp_config()).unwrap();
    let from = "_BASE_CONFIG_: cfgs/dataset_configs/kitti_dataset.yaml";
    assert!(yaml.contains(from));
    let abs = format!("_BASE_CONFIG_: {}", base.display());
    let cases = [
        (
            "absolute.yaml",
            yaml.replace(from, &abs),
            "relative to the folder",
        ),
        (
            "dotdot.yaml",
            yaml.replace(
                from,
                "_BASE_CONFIG_: cfgs/../cfgs/dataset_configs/kitti_dataset.yaml",
            ),
            "without `..`",
        ),
        (
            "list.yaml",
            yaml.replace(from, "_BASE_CONFIG_: cfgs/dataset_configs/list.yaml"),
            "not a mapping",
        ),
        (
            "name.yaml",
            yaml.replace("NAME: PointPillar\n", "NAME: PointPillarz\n"),
            "`PointPillarz` is not an OpenPCDet detector",
        ),
        (
            "pvrcnn.yaml",
            yaml.replace("NAME: PointPillar\n", "NAME: PVRCNN\n"),
            "`PVRCNN` is not supported yet",
        ),
    ];
    for (name, text, expect) in cases {
        let path = models.join(name);
        std::fs::write(&path, text).unwrap();
        let out = detect_cli(&path, &pp_weights(), &kitti("velodyne/000008.bin")).run();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(expect), "{name}: {err}");
    }
}
