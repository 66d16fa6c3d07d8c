//! The pruning subcommands end to end on the KITTI PointPillars reference model and the real
//! KITTI frames: `grad` against OpenPCDet's gradients, `curves | solve | export`, `prune`,
//! `merge`, clear errors for bad input, and Ctrl-C leaving no output file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::util::{TempDir, kitti, pruneview, shared};
use pruneview::io::{OutTensor, write_safetensors};
use pruneview::model::Weights;
use pruneview::model::weights::to_file_layout;
use pruneview::prune::{Allocation, Curves};

fn pp(rel: &str) -> PathBuf {
    shared().join("reference").join(rel)
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "pruneview failed: {err}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    assert!(!o.status.success(), "pruneview should have failed");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// Model and calibration flags: both real KITTI frames, camera-FOV filtered per frame.
fn model_and_scans() -> Vec<String> {
    args(&[
        "--config",
        &s(&pp("cfgs/kitti_models/pointpillar.yaml")),
        "--weights",
        &s(&pp("pointpillar_kitti_000008/weights.safetensors")),
        "--scans",
        &s(&kitti("velodyne")),
        "--fov-calib",
        &s(&kitti("calib")),
        "--image-size",
        "375x1242",
    ])
}

#[test]
fn grad_dumps_openpcdet_gradients() {
    let dir = TempDir::new("grad");
    let out = dir.join("grads.safetensors");
    let o = pruneview(&args(&[
        "grad",
        "--config",
        &s(&pp("cfgs/kitti_models/pointpillar.yaml")),
        "--weights",
        &s(&pp("pointpillar_kitti_000008/weights.safetensors")),
        "--scan",
        &s(&pp("pointpillar_kitti_000008/points_in.bin")),
        "--probe",
        &s(&pp("pointpillar_kitti_000008/golden.safetensors")),
        "--dump",
        &s(&out),
    ]));
    ok(&o);
    let ours = Weights::open(&out).expect("dump");
    let golden = Weights::open(&pp("pointpillar_kitti_000008/golden.safetensors")).expect("golden");
    let names: Vec<String> = golden
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("grad."))
        .collect();
    assert_eq!(ours.keys().len(), names.len());
    for name in [
        "grad.backbone_2d.blocks.1.4.weight",
        "grad.dense_head.conv_cls.bias",
    ] {
        let a = ours.tensor_any_shape(name).expect(name);
        let b = golden.tensor(name, &a.shape).expect(name);
        let (d, n) = a
            .data
            .iter()
            .zip(&b.data)
            .fold((0f64, 0f64), |(d, n), (x, y)| {
                (d + ((x - y) as f64).powi(2), n + (*y as f64).powi(2))
            });
        assert!(d.sqrt() <= 1e-3 * n.sqrt(), "{name}");
    }
    // The probe must fit the model's outputs.
    let o = pruneview(&args(&[
        "grad",
        "--config",
        &s(&pp("cfgs/kitti_models/pointpillar.yaml")),
        "--weights",
        &s(&pp("pointpillar_kitti_000008/weights.safetensors")),
        "--scan",
        &s(&pp("pointpillar_kitti_000008/points_in.bin")),
        "--probe",
        &s(&pp("pointpillar_kitti_000008/weights.safetensors")),
        "--dump",
        &s(&dir.join("x.safetensors")),
    ]));
    let e = err(&o);
    assert!(e.contains("probe.cls_preds"), "{e}");
}

#[test]
fn curves_solve_export_and_prune() {
    let dir = TempDir::new("pipeline");
    let curves = dir.join("curves.json");
    let mut a = args(&["curves"]);
    a.extend(model_and_scans());
    a.extend(args(&[
        "--probes",
        "1",
        "--levels",
        "21",
        "--out",
        &s(&curves),
    ]));
    ok(&pruneview(&a));
    let c = Curves::load(&curves).expect("curves");
    assert_eq!(c.layers.len(), 23);
    assert_eq!(c.calibration.scans, 2);
    assert_eq!(c.model.weights_sha256.len(), 64);

    // Every method gives an allocation within budget.
    let weights = s(&pp("pointpillar_kitti_000008/weights.safetensors"));
    for method in ["dp", "uniform", "global", "lamp", "erk"] {
        let alloc = dir.join(format!("{method}.json"));
        let stdout = ok(&pruneview(&args(&[
            "solve",
            "--curves",
            &s(&curves),
            "--flops-keep",
            "0.3",
            "--method",
            method,
            "--weights",
            &weights,
            "--out",
            &s(&alloc),
        ])));
        assert!(stdout.contains("FLOPs kept"), "{stdout}");
        let a = Allocation::load(&alloc).expect("allocation");
        assert_eq!(a.method.name(), method);
        assert!(a.flops_kept <= 0.3 + 1e-12, "{method}: {}", a.flops_kept);
        assert!(a.flops_kept > 0.25, "{method}: {}", a.flops_kept);
    }
    // Params budget and a locked layer.
    let locked = dir.join("locked.json");
    ok(&pruneview(&args(&[
        "solve",
        "--curves",
        &s(&curves),
        "--params-keep",
        "0.5",
        "--lock",
        "dense_head.conv_cls",
        "--out",
        &s(&locked),
    ])));
    let a = Allocation::load(&locked).expect("allocation");
    assert!(a.params_kept <= 0.5);
    assert_eq!(a.sparsity_of("dense_head.conv_cls.weight"), Some(0.0));

    // Export the DP allocation.
    let (masks, pruned, csv) = (
        dir.join("m.safetensors"),
        dir.join("p.safetensors"),
        dir.join("r.csv"),
    );
    ok(&pruneview(&args(&[
        "export",
        "--weights",
        &weights,
        "--alloc",
        &s(&dir.join("dp.json")),
        "--masks",
        &s(&masks),
        "--pruned",
        &s(&pruned),
        "--csv",
        &s(&csv),
        "--curves",
        &s(&curves),
    ])));
    let m = Weights::open(&masks).expect("masks");
    assert_eq!(m.keys().len(), 23);
    let report = std::fs::read_to_string(&csv).expect("csv");
    assert_eq!(report.lines().count(), 24);

    // Bad input: budget outside [0, 1], unknown layer, truncated curves; nothing written.
    let out = dir.join("never.json");
    for (bad, expect) in [
        (vec!["--flops-keep", "1.5"], "fraction"),
        (
            vec!["--flops-keep", "0.3", "--lock", "no.such.layer"],
            "no.such.layer",
        ),
        (
            vec!["--flops-keep", "0.3", "--lambda-conf=-1"],
            "group weight",
        ),
        (
            vec!["--flops-keep", "0.3", "--lambda-loc", "nan"],
            "group weight",
        ),
        (vec!["--flops-keep", "0.3", "--bins", "1"], "bins"),
        (
            vec![
                "--flops-keep",
                "0.3",
                "--lock",
                "dense_head.conv_cls",
                "--min-sparsity",
                "dense_head.conv_cls=0.5",
            ],
            "--lock keeps it dense",
        ),
    ] {
        let mut a = args(&["solve", "--curves", &s(&curves), "--out", &s(&out)]);
        a.extend(args(&bad));
        let e = err(&pruneview(&a));
        assert!(e.contains(expect), "{e}");
    }
    let truncated = dir.join("truncated.json");
    let text = std::fs::read_to_string(&curves).expect("read");
    std::fs::write(&truncated, &text[..text.len() / 2]).expect("write");
    let e = err(&pruneview(&args(&[
        "solve",
        "--curves",
        &s(&truncated),
        "--flops-keep",
        "0.3",
        "--out",
        &s(&out),
    ])));
    assert!(e.contains("truncated.json"), "{e}");
    assert!(!out.exists());
    // Refuses to overwrite an input.
    let e = err(&pruneview(&args(&[
        "solve",
        "--curves",
        &s(&curves),
        "--flops-keep",
        "0.3",
        "--out",
        &s(&curves),
    ])));
    assert!(e.contains("refusing to overwrite"), "{e}");

    // `prune` chains everything into one folder; here with the saliency ranking, whose
    // Gauss-Newton diagonal is kept beside the curves so masks can be rebuilt.
    let outdir = dir.join("pruned-30");
    let mut a = args(&["prune"]);
    a.extend(model_and_scans());
    a.extend(args(&[
        "--max-scans",
        "1",
        "--probes",
        "1",
        "--levels",
        "11",
        "--ranking",
        "saliency",
        "--flops-keep",
        "0.3",
        // Masks only: recovery is tested on the demo model (tests/it/recover.rs).
        "--recover",
        "none",
        "--out",
        &s(&outdir),
    ]));
    ok(&pruneview(&a));
    for f in [
        "curves.json",
        "curves.saliency.safetensors",
        "allocation.json",
        "masks.safetensors",
        "pruned.safetensors",
        "report.csv",
    ] {
        assert!(outdir.join(f).exists(), "{f}");
    }
    let alloc = Allocation::load(&outdir.join("allocation.json")).expect("allocation");
    assert_eq!(alloc.ranking, pruneview::prune::Ranking::Saliency);
    // Rebuilding the masks needs the diagonal: without it, a clear error; with it, the same
    // masks as `prune` wrote.
    let again = dir.join("again.safetensors");
    let export = |extra: &[&str]| {
        let mut a = args(&[
            "export",
            "--weights",
            &weights,
            "--alloc",
            &s(&outdir.join("allocation.json")),
            "--masks",
            &s(&again),
        ]);
        a.extend(args(extra));
        pruneview(&a)
    };
    let e = err(&export(&[]));
    assert!(e.contains("--saliency"), "{e}");
    ok(&export(&[
        "--saliency",
        &s(&outdir.join("curves.saliency.safetensors")),
    ]));
    let (m1, m2) = (
        Weights::open(&outdir.join("masks.safetensors")).expect("masks"),
        Weights::open(&again).expect("masks again"),
    );
    for k in m1.keys() {
        assert_eq!(
            m1.raw(&k).expect("raw").2,
            m2.raw(&k).expect("raw").2,
            "{k}"
        );
    }

    // Outputs that would replace an input, or each other, are refused before any work.
    let curves_before = std::fs::read(outdir.join("curves.json")).expect("curves");
    let mut a = args(&["prune"]);
    a.extend(model_and_scans());
    a.extend(args(&[
        "--norm-from",
        &s(&outdir.join("curves.json")),
        "--flops-keep",
        "0.3",
        "--out",
        &s(&outdir),
    ]));
    // (Checked up front: a refusal at write time would say "refusing to overwrite".)
    let e = err(&pruneview(&a));
    assert!(
        e.contains("curves.json") && e.contains("one of the inputs"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(outdir.join("curves.json")).expect("curves"),
        curves_before
    );
    let e = err(&export(&["--pruned", &s(&again)]));
    assert!(e.contains("two outputs"), "{e}");
}

#[test]
fn shards_computed_separately_merge() {
    let dir = TempDir::new("merge");
    let norm = dir.join("norm.json");
    let base = |extra: &[&str], out: &Path| {
        let mut a = args(&["curves"]);
        a.extend(model_and_scans());
        a.extend(args(&["--probes", "1", "--levels", "11"]));
        a.extend(args(extra));
        a.extend(args(&["--out", &s(out)]));
        ok(&pruneview(&a));
    };
    base(&[], &norm);
    let n = s(&norm);
    // Each shard: one frame (`--scans` replaced by a single file).
    let shard = |frame: &str, out: &Path| {
        let mut a = args(&["curves"]);
        let mut m = model_and_scans();
        m[5] = s(&kitti(&format!("velodyne/{frame}.bin")));
        a.extend(m);
        a.extend(args(&[
            "--probes",
            "1",
            "--levels",
            "11",
            "--norm-from",
            &n,
            "--out",
            &s(out),
        ]));
        ok(&pruneview(&a));
    };
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    shard("000000", &a);
    shard("000008", &b);
    let merged = dir.join("merged.json");
    ok(&pruneview(&args(&[
        "merge",
        &s(&a),
        &s(&b),
        "--out",
        &s(&merged),
    ])));
    let m = Curves::load(&merged).expect("merged");
    let whole = Curves::load(&norm).expect("whole");
    assert_eq!(m.calibration.scans, 2);
    for (x, y) in m.layers.iter().zip(&whole.layers) {
        for (p, q) in x.distortion.confidence.iter().zip(&y.distortion.confidence) {
            assert!((p - q).abs() <= 1e-12 * q.abs().max(1e-300), "{}", x.name);
        }
    }
    // The same shard twice is refused.
    let e = err(&pruneview(&args(&[
        "merge",
        &s(&a),
        &s(&a),
        "--out",
        &s(&dir.join("x.json")),
    ])));
    assert!(e.contains("in both shards"), "{e}");
    // The normalisation file read is never the one written.
    let before = std::fs::read(&norm).expect("norm");
    let mut c = args(&["curves"]);
    c.extend(model_and_scans());
    c.extend(args(&["--norm-from", &n, "--out", &n]));
    let e = err(&pruneview(&c));
    assert!(
        e.contains("norm.json") && e.contains("one of the inputs"),
        "{e}"
    );
    assert_eq!(std::fs::read(&norm).expect("norm"), before);
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_curves_and_writes_nothing() {
    let dir = TempDir::new("ctrlc");
    let out = dir.join("curves.json");
    let mut a = args(&["curves"]);
    a.extend(model_and_scans());
    a.extend(args(&["--probes", "50", "--out", &s(&out)]));
    let child = Command::new(env!("CARGO_BIN_EXE_pruneview"))
        .args(&a)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_secs(4));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let o = child.wait_with_output().expect("wait");
    let e = err(&o);
    assert!(e.contains("cancelled"), "{e}");
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir).expect("dir").collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// SECOND (MeanVFE, the sparse 3-D backbone, anchor head) pruned end to end on both real
/// KITTI frames: its sparse convs are in the layer table with FLOPs from the rulebooks, the
/// DP prunes within the budget, the pruned weights load, and statistics repair runs through
/// the sparse convs.
#[test]
fn second_prunes_end_to_end_on_kitti() {
    let out = TempDir::new("second");
    let weights = pp("second_kitti_000008/weights.safetensors");
    ok(&pruneview(&prune_second(&weights, &out)));

    let curves = Curves::load(&out.join("curves.json")).expect("curves.json");
    let sparse: Vec<_> = curves
        .layers
        .iter()
        .filter(|l| l.name.starts_with("backbone_3d."))
        .collect();
    assert_eq!(
        sparse.len(),
        12,
        "every SubMConv3d / SparseConv3d is a layer"
    );
    for l in &sparse {
        assert_eq!(l.shape.len(), 5, "{}", l.name);
        assert!(l.flops > 0.0, "{}: FLOPs from the rulebook pairs", l.name);
    }
    // conv_input: 2 x pairs x 4 x 16, pairs the mean over the two frames (a half-integer
    // at most).
    let first = &sparse[0];
    assert_eq!(first.name, "backbone_3d.conv_input.0.weight");
    let pairs2 = 2.0 * first.flops / (2.0 * 4.0 * 16.0);
    assert!(
        (pairs2 - pairs2.round()).abs() < 1e-6,
        "mean pairs {}",
        pairs2 / 2.0
    );
    let alloc = Allocation::load(&out.join("allocation.json")).expect("allocation.json");
    assert!(alloc.flops_kept <= 0.5 + 1e-9, "{}", alloc.flops_kept);
    assert!(
        (alloc.flops_dense - curves.layers.iter().map(|l| l.flops).sum::<f64>()).abs()
            <= 1e-6 * alloc.flops_dense
    );

    // Statistics repair changes BatchNorm buffers only: the weights are exactly the dense
    // ones times the masks, and the sparse convs' statistics are repaired too.
    let masks = Weights::open(&out.join("masks.safetensors")).expect("masks");
    let w = Weights::open(&pp("second_kitti_000008/weights.safetensors")).unwrap();
    let pruned = Weights::open(&out.join("pruned.safetensors")).expect("pruned");
    assert!(masks.keys().iter().any(|k| k.starts_with("backbone_3d.")));
    for key in masks.keys() {
        let (_, _, m) = masks.raw(&key).unwrap();
        let p = pruned.tensor_any_shape(&key).unwrap();
        let d = w.tensor_any_shape(&key).unwrap();
        assert_eq!(m.len(), d.data.len(), "{key}");
        for ((&m, &p), &d) in m.iter().zip(&p.data).zip(&d.data) {
            assert_eq!(p, if m == 0 { 0.0 } else { d }, "{key}");
        }
    }
    let bn = "backbone_3d.conv2.1.1.running_var";
    assert_ne!(
        pruned.tensor_any_shape(bn).unwrap().data,
        w.tensor_any_shape(bn).unwrap().data,
        "{bn}: the sparse convs' statistics are repaired"
    );
    // The recovered file embeds the config.
    ok(&pruneview(&args(&[
        "detect",
        "--weights",
        &s(&out.join("pruned.safetensors")),
        "--scan",
        &s(&kitti("velodyne/000008.bin")),
        "--fov-calib",
        &s(&kitti("calib/000008.txt")),
        "--image-size",
        "375x1242",
    ])));

    // The same model in spconv 1.x's layout (the model zoo's checkpoints) prunes the same
    // weights: its masks and recovered weights are written in that layout.
    let v1_dir = TempDir::new("second-v1");
    let v1 = v1_dir.join("second_v1.safetensors");
    write_in_spconv1_layout(&w, &v1);
    let out_v1 = v1_dir.join("out");
    ok(&pruneview(&prune_second(&v1, &out_v1)));
    let alloc_v1 = Allocation::load(&out_v1.join("allocation.json")).unwrap();
    let sparsity = |a: &Allocation| a.layers.iter().map(|l| l.sparsity).collect::<Vec<_>>();
    assert_eq!(sparsity(&alloc_v1), sparsity(&alloc));
    let masks_v1 = Weights::open(&out_v1.join("masks.safetensors")).unwrap();
    let pruned_v1 = Weights::open(&out_v1.join("pruned.safetensors")).unwrap();
    for key in masks.keys() {
        let (_, native, m) = masks.raw(&key).unwrap();
        let (_, file, m_v1) = masks_v1.raw(&key).unwrap();
        assert_eq!(file, &*file_shape(native), "{key}");
        assert_eq!(
            m_v1,
            &*to_file_layout(m, native, file),
            "{key}: the same weights pruned"
        );
        let p = pruned.tensor_any_shape(&key).unwrap();
        let p_v1 = pruned_v1.tensor_any_shape(&key).unwrap();
        assert_eq!(p_v1.shape, file, "{key}: written in the file's layout");
        assert_eq!(p_v1.data, to_file_layout(&p.data, native, file), "{key}");
    }
    // Read back for a detector (`eval --masks`, `recover`), both mask files are the same.
    let load = |w: &Path| {
        pruneview::detect::Detector::load(Some(&pp("cfgs/kitti_models/second.yaml")), w).unwrap()
    };
    let read = pruneview::prune::export::read_masks;
    assert_eq!(
        read(&out_v1.join("masks.safetensors"), &load(&v1)).unwrap(),
        read(&out.join("masks.safetensors"), &load(&weights)).unwrap()
    );
    ok(&pruneview(&args(&[
        "detect",
        "--weights",
        &s(&out_v1.join("pruned.safetensors")),
        "--scan",
        &s(&kitti("velodyne/000008.bin")),
    ])));
}

/// `prune` of SECOND (weights `weights`) on both KITTI frames at 50% FLOPs with statistics
/// repair, into `out`.
fn prune_second(weights: &Path, out: &Path) -> Vec<String> {
    args(&[
        "prune",
        "--config",
        &s(&pp("cfgs/kitti_models/second.yaml")),
        "--weights",
        &s(weights),
        "--scans",
        &s(&kitti("velodyne")),
        "--fov-calib",
        &s(&kitti("calib")),
        "--image-size",
        "375x1242",
        "--probes",
        "1",
        "--flops-keep",
        "0.5",
        "--recover",
        "stats",
        "--out",
        &s(out),
    ])
}

/// spconv 1.x's `[kz, ky, kx, Cin, Cout]` of a 5-D `[Cout, kz, ky, kx, Cin]` shape; other
/// shapes as they are.
fn file_shape(native: &[usize]) -> Vec<usize> {
    match native {
        &[cout, kz, ky, kx, cin] => vec![kz, ky, kx, cin, cout],
        other => other.to_vec(),
    }
}

/// `w` with every sparse-conv weight in spconv 1.x's layout, every other tensor as it is.
fn write_in_spconv1_layout(w: &Weights, path: &Path) {
    let tensors: Vec<OutTensor> = w
        .keys()
        .into_iter()
        .map(|key| {
            let (dtype, shape, bytes) = w.raw(&key).unwrap();
            let size = bytes.len() / shape.iter().product::<usize>().max(1);
            let elems: Vec<Vec<u8>> = bytes.chunks(size).map(<[u8]>::to_vec).collect();
            let file = file_shape(shape);
            let bytes = to_file_layout(&elems, shape, &file).concat();
            OutTensor {
                name: key,
                dtype,
                shape: file,
                bytes,
            }
        })
        .collect();
    write_safetensors(path, &tensors, None, &[]).unwrap();
}

/// `grad --probe --dump` on SECOND: a gradient for every parameter OpenPCDet's has, under the
/// same names. Only the head's bias gradients (which depend on the probe alone) can be
/// compared with the fixture: its activations carry spconv's CPU races (see
/// `tests/it/golden.rs`), and every other gradient depends on them.
#[test]
fn grad_dumps_every_gradient_of_second() {
    let dir = TempDir::new("grad-second");
    let out = dir.join("grads.safetensors");
    let fixture = pp("second_kitti_000008/golden.safetensors");
    ok(&pruneview(&args(&[
        "grad",
        "--config",
        &s(&pp("cfgs/kitti_models/second.yaml")),
        "--weights",
        &s(&pp("second_kitti_000008/weights.safetensors")),
        "--scan",
        &s(&pp("second_kitti_000008/points_in.bin")),
        "--probe",
        &s(&fixture),
        "--dump",
        &s(&out),
    ])));
    let ours = Weights::open(&out).expect("dump");
    let golden = Weights::open(&fixture).expect("golden");
    let mut names: Vec<String> = golden
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("grad."))
        .collect();
    names.sort();
    let mut got = ours.keys();
    got.sort();
    assert_eq!(got, names);
    assert_eq!(names.len(), 84);
    for name in [
        "grad.dense_head.conv_cls.bias",
        "grad.dense_head.conv_box.bias",
        "grad.dense_head.conv_dir_cls.bias",
    ] {
        let a = ours.tensor_any_shape(name).unwrap();
        let b = golden.tensor_any_shape(name).unwrap();
        let scale = b.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (x, y) in a.data.iter().zip(&b.data) {
            assert!((x - y).abs() <= 1e-4 * scale, "{name}: {x} vs {y}");
        }
    }
}

/// Measured curves on a subset of the calibration scans (`--measured-scans`), after
/// statistics repair: the recovery-aware curves that `solve --on measured` allocates on.
#[test]
fn measured_curves_on_a_subset_of_the_scans() {
    let dir = TempDir::new("measured-subset");
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets");
    let out = dir.join("c.json");
    let o = pruneview(&args(&[
        "curves",
        "--weights",
        &s(&demo.join("demo_pointpillar.safetensors")),
        "--scans",
        &s(&demo.join("scans/synthetic/velodyne")),
        "--max-scans",
        "2",
        "--probes",
        "1",
        "--measured",
        "backbone_2d.blocks.0.1.weight",
        "--measured-levels",
        "0.5,1",
        "--measured-after-stats",
        "--measured-scans",
        "1",
        "--out",
        &s(&out),
    ]));
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{e}");
    assert!(e.contains("measured curves on 1 of the 2 scans"), "{e}");
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let layer = c["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "backbone_2d.blocks.0.1.weight")
        .unwrap();
    assert!(layer["measured"].is_object(), "{layer}");
}
