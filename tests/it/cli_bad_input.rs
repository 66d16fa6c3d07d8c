//! Bad input, table-driven: every case runs the real binary on a crafted input and must exit
//! with a usage error (1, or clap's 2 for a malformed flag; never a panic's 101), say which
//! file or flag is wrong and what is wrong with it, leave every input byte-identical and leave
//! no partial output behind (no output file, no temporary or staging file).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::util::{TempDir, demo, kitti, repo};

use pruneview::io::{OutTensor, write_safetensors};
use pruneview::model::Weights;
use safetensors::tensor::Dtype;

fn kitti_scan() -> PathBuf {
    kitti("velodyne/000008.bin")
}

/// One bad input: the arguments (with `{d}` for the scratch folder), what stderr must say,
/// the exit code, and the paths (in the scratch folder) that must not exist afterwards.
struct Case {
    name: &'static str,
    setup: fn(&Path),
    args: &'static [&'static str],
    says: &'static [&'static str],
    code: i32,
    absent: &'static [&'static str],
}

fn u8_tensor(name: &str, shape: &[usize], data: Vec<u8>) -> OutTensor {
    OutTensor {
        name: name.into(),
        dtype: Dtype::U8,
        shape: shape.to_vec(),
        bytes: data,
    }
}

/// Masks for the demo's first conv, with `value` everywhere (F32 when `float`).
fn masks(dir: &Path, value: u8, float: bool) {
    let w = Weights::open(&demo()).unwrap();
    let name = "backbone_2d.blocks.0.1.weight";
    let t = w.tensor_any_shape(name).unwrap();
    let n = t.data.len();
    let tensor = if float {
        OutTensor::f32(name, &t.shape, &vec![f32::from(value); n])
    } else {
        u8_tensor(name, &t.shape, vec![value; n])
    };
    write_safetensors(&dir.join("m.safetensors"), &[tensor], None, &[]).unwrap();
}

/// The demo's YAML with one line replaced, as `{d}/cfgs/kitti_models/m.yaml`.
fn yaml_with(dir: &Path, from: &str, to: &str) {
    let yaml = std::fs::read_to_string(repo("tools/demo_pointpillar.yaml")).unwrap();
    assert!(yaml.contains(from), "{from}");
    let models = dir.join("cfgs/kitti_models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("m.yaml"), yaml.replacen(from, to, 1)).unwrap();
}

fn pcd(dir: &Path, header: &str) {
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 32]);
    std::fs::write(dir.join("s.pcd"), bytes).unwrap();
}

fn allocation(dir: &Path, layers: &str) {
    let curves = repo("docs/pruning-report/recovery/curves.json");
    let out = Command::new(env!("CARGO_BIN_EXE_pruneview"))
        .args(["solve", "--curves"])
        .arg(&curves)
        .args(["--flops-keep", "0.5", "--out"])
        .arg(dir.join("a.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if !layers.is_empty() {
        let text = std::fs::read_to_string(dir.join("a.json")).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["layers"] = serde_json::from_str(layers).unwrap();
        std::fs::write(dir.join("a.json"), v.to_string()).unwrap();
    }
}

fn nothing(_: &Path) {}

const P_HEADER: &str = "VERSION .7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\n";

const CASES: &[Case] = &[
    Case {
        name: "f32 masks",
        setup: |d| masks(d, 1, true),
        args: &[
            "eval",
            "--weights",
            "{demo}",
            "--masks",
            "{d}/m.safetensors",
            "--dataset",
            "{d}",
        ],
        says: &["m.safetensors", "dtype F32", "U8 or BOOL"],
        code: 1,
        absent: &[],
    },
    Case {
        name: "mask value 2",
        setup: |d| masks(d, 2, false),
        args: &[
            "eval",
            "--weights",
            "{demo}",
            "--masks",
            "{d}/m.safetensors",
            "--dataset",
            "{d}",
        ],
        says: &["m.safetensors", "holds 2", "0 (pruned) or 1 (kept)"],
        code: 1,
        absent: &[],
    },
    Case {
        name: "points per voxel",
        setup: |d| {
            yaml_with(
                d,
                "MAX_POINTS_PER_VOXEL: 32",
                "MAX_POINTS_PER_VOXEL: 1000000000",
            )
        },
        args: &[
            "detect",
            "--config",
            "{d}/cfgs/kitti_models/m.yaml",
            "--weights",
            "{demo}",
            "--scan",
            "{scan}",
        ],
        says: &["m.yaml", "1000000000"],
        code: 1,
        absent: &[],
    },
    Case {
        name: "tiny voxels",
        setup: |d| {
            yaml_with(
                d,
                "VOXEL_SIZE: [0.32, 0.32, 4]",
                "VOXEL_SIZE: [0.0001, 0.0001, 4]",
            )
        },
        args: &[
            "detect",
            "--config",
            "{d}/cfgs/kitti_models/m.yaml",
            "--weights",
            "{demo}",
            "--scan",
            "{scan}",
        ],
        says: &["m.yaml", "cells"],
        code: 1,
        absent: &[],
    },
    Case {
        name: "absolute base config",
        setup: |d| {
            yaml_with(
                d,
                "CLASS_NAMES:",
                "_BASE_CONFIG_: /etc/passwd\nCLASS_NAMES:",
            )
        },
        args: &[
            "detect",
            "--config",
            "{d}/cfgs/kitti_models/m.yaml",
            "--weights",
            "{demo}",
            "--scan",
            "{scan}",
        ],
        says: &["m.yaml", "relative to the folder"],
        code: 1,
        absent: &[],
    },
    Case {
        name: "unknown detector",
        setup: |d| yaml_with(d, "NAME: PointPillar", "NAME: FooNet"),
        args: &[
            "detect",
            "--config",
            "{d}/cfgs/kitti_models/m.yaml",
            "--weights",
            "{demo}",
            "--scan",
            "{scan}",
        ],
        says: &["m.yaml", "FooNet", "not an OpenPCDet detector"],
        code: 1,
        absent: &[],
    },
    Case {
        name: "scan is a device",
        setup: nothing,
        args: &[
            "detect",
            "--weights",
            "{demo}",
            "--scan",
            "/dev/zero",
            "--format",
            "kitti",
        ],
        says: &["/dev/zero", "not a regular file"],
        code: 1,
        absent: &[],
    },
    Case {
        name: "pcd count wraps",
        setup: |d| {
            pcd(
                d,
                &format!(
                    "{P_HEADER}COUNT 1 1 1 4611686018427387904\nWIDTH 2\nHEIGHT 1\nPOINTS 2\nDATA binary\n"
                ),
            )
        },
        args: &["detect", "--weights", "{demo}", "--scan", "{d}/s.pcd"],
        says: &["s.pcd", "COUNT"],
        code: 1,
        absent: &[],
    },
    Case {
        name: "pcd promises 1e12 points",
        setup: |d| {
            pcd(
                d,
                &format!(
                    "{P_HEADER}COUNT 1 1 1 1\nWIDTH 1000000000000\nHEIGHT 1\nPOINTS 1000000000000\nDATA binary\n"
                ),
            )
        },
        args: &["detect", "--weights", "{demo}", "--scan", "{d}/s.pcd"],
        says: &["s.pcd", "16000000000000 bytes"],
        code: 1,
        absent: &[],
    },
    Case {
        name: "levels without bound",
        setup: nothing,
        args: &[
            "curves",
            "--weights",
            "{demo}",
            "--scans",
            "{scan}",
            "--levels",
            "10000000",
            "--out",
            "{d}/c.json",
        ],
        says: &["10000000", "levels"],
        code: 2,
        absent: &["c.json"],
    },
    Case {
        name: "negative lambda",
        setup: nothing,
        args: &[
            "solve",
            "--curves",
            "{curves}",
            "--flops-keep",
            "0.5",
            "--lambda-conf=-1",
            "--out",
            "{d}/a.json",
        ],
        says: &["-1", "group weight"],
        code: 2,
        absent: &["a.json"],
    },
    Case {
        name: "curves output is its norm input",
        setup: |d| {
            std::fs::copy(
                repo("docs/pruning-report/recovery/curves.json"),
                d.join("n.json"),
            )
            .map(|_| ())
            .unwrap()
        },
        args: &[
            "curves",
            "--weights",
            "{demo}",
            "--scans",
            "{scan}",
            "--norm-from",
            "{d}/n.json",
            "--out",
            "{d}/./n.json",
        ],
        says: &["n.json", "one of the inputs"],
        code: 1,
        absent: &[],
    },
    Case {
        name: "curves output folder not writable",
        setup: nothing,
        args: &[
            "curves",
            "--weights",
            "{demo}",
            "--scans",
            "{scan}",
            "--out",
            "/proc/pruneview/c.json",
        ],
        says: &["/proc/pruneview/c.json", "not writable"],
        code: 1,
        absent: &[],
    },
    Case {
        name: "output is a folder",
        setup: |d| std::fs::create_dir(d.join("c.json")).unwrap(),
        args: &[
            "curves",
            "--weights",
            "{demo}",
            "--scans",
            "{scan}",
            "--out",
            "{d}/c.json",
        ],
        says: &["c.json", "is a folder"],
        code: 1,
        absent: &[],
    },
    Case {
        name: "output under a file",
        setup: |d| std::fs::write(d.join("f"), b"x").unwrap(),
        args: &[
            "solve",
            "--curves",
            "{curves}",
            "--flops-keep",
            "0.5",
            "--out",
            "{d}/f/a.json",
        ],
        says: &["a.json", "is a file, not a folder"],
        code: 1,
        absent: &[],
    },
    Case {
        name: "prune into the folder of its weights",
        setup: |d| {
            std::fs::copy(demo(), d.join("pruned.safetensors"))
                .map(|_| ())
                .unwrap()
        },
        args: &[
            "prune",
            "--weights",
            "{d}/pruned.safetensors",
            "--scans",
            "{scan}",
            "--flops-keep",
            "0.5",
            "--out",
            "{d}",
        ],
        says: &["pruned.safetensors", "one of the inputs"],
        code: 1,
        absent: &[
            "curves.json",
            "masks.safetensors",
            "allocation.json",
            ".pruneview.lock",
        ],
    },
    Case {
        name: "masks and pruned at one new path",
        setup: |d| allocation(d, ""),
        args: &[
            "export",
            "--weights",
            "{demo}",
            "--alloc",
            "{d}/a.json",
            "--masks",
            "{d}/e/x.safetensors",
            "--pruned",
            "{d}/./e/x.safetensors",
        ],
        says: &["x.safetensors", "given for two outputs"],
        code: 1,
        absent: &["e"],
    },
    Case {
        name: "allocation names a batchnorm",
        setup: |d| {
            allocation(
                d,
                r#"[{"name": "backbone_2d.blocks.0.2.weight", "sparsity": 0.5}]"#,
            )
        },
        args: &[
            "export",
            "--weights",
            "{demo}",
            "--alloc",
            "{d}/a.json",
            "--masks",
            "{d}/m.safetensors",
        ],
        says: &["backbone_2d.blocks.0.2.weight", "BatchNorm"],
        code: 1,
        absent: &["m.safetensors"],
    },
    Case {
        name: "empty allocation",
        setup: |d| allocation(d, "[]"),
        args: &[
            "export",
            "--weights",
            "{demo}",
            "--alloc",
            "{d}/a.json",
            "--masks",
            "{d}/m.safetensors",
        ],
        says: &["no layers"],
        code: 1,
        absent: &["m.safetensors"],
    },
    Case {
        name: "saliency for a magnitude allocation",
        setup: |d| allocation(d, ""),
        args: &[
            "export",
            "--weights",
            "{demo}",
            "--alloc",
            "{d}/a.json",
            "--saliency",
            "{demo}",
            "--masks",
            "{d}/m.safetensors",
        ],
        says: &["--saliency", "magnitude"],
        code: 1,
        absent: &["m.safetensors"],
    },
    Case {
        name: "synth over a dataset",
        setup: |d| {
            std::fs::create_dir_all(d.join("ds/label_2")).unwrap();
            std::fs::write(
                d.join("ds/label_2/000000.txt"),
                b"Car 0 0 0 0 0 1 1 1 1 1 1 1 1 0\n",
            )
            .unwrap();
        },
        args: &["synth", "--out", "{d}/ds", "--count", "1"],
        says: &["ds", "already holds a dataset"],
        code: 1,
        absent: &["ds/velodyne/000000.bin"],
    },
    Case {
        name: "results folder without the frames",
        setup: |d| {
            std::fs::create_dir_all(d.join("labels")).unwrap();
            std::fs::create_dir_all(d.join("results")).unwrap();
            std::fs::write(
                d.join("labels/000000.txt"),
                b"Car 0 0 0 0 0 10 50 1 1 1 1 1 1 0\n",
            )
            .unwrap();
        },
        args: &["eval", "--results", "{d}/results", "--labels", "{d}/labels"],
        says: &["results", "none of the frames"],
        code: 1,
        absent: &[],
    },
];

/// Every regular file under `dir`, with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn bad_inputs_fail_clearly_and_change_nothing() {
    let shared_inputs = [
        demo(),
        kitti_scan(),
        repo("docs/pruning-report/recovery/curves.json"),
    ];
    let shared_before: Vec<Vec<u8>> = shared_inputs
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let mut failures = Vec::new();
    for case in CASES {
        let scratch = TempDir::new(&case.name.replace(' ', "-"));
        (case.setup)(&scratch);
        let before = snapshot(&scratch);
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| {
                a.replace("{d}", scratch.to_str().unwrap())
                    .replace("{demo}", demo().to_str().unwrap())
                    .replace("{scan}", kitti_scan().to_str().unwrap())
                    .replace(
                        "{curves}",
                        repo("docs/pruning-report/recovery/curves.json")
                            .to_str()
                            .unwrap(),
                    )
            })
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_pruneview"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let mut problems = Vec::new();
        if out.status.code() != Some(case.code) {
            problems.push(format!(
                "exit {:?}, expected {}",
                out.status.code(),
                case.code
            ));
        }
        for s in case.says {
            if !err.contains(s) {
                problems.push(format!("stderr lacks `{s}`"));
            }
        }
        // Nothing written: the scratch folder holds exactly what the case put there.
        let after = snapshot(&scratch);
        if after != before {
            let names = |v: &[(PathBuf, Vec<u8>)]| -> Vec<String> {
                v.iter().map(|(p, _)| p.display().to_string()).collect()
            };
            problems.push(format!(
                "files changed: {:?} -> {:?}",
                names(&before),
                names(&after)
            ));
        }
        for a in case.absent {
            if scratch.join(a).exists() {
                problems.push(format!("{a} exists"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n  stderr: {}",
                case.name,
                problems.join("; "),
                err.trim()
            ));
        }
    }
    for (p, bytes) in shared_inputs.iter().zip(&shared_before) {
        assert_eq!(&std::fs::read(p).unwrap(), bytes, "{} changed", p.display());
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
