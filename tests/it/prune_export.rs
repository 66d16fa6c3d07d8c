//! Exports on the reference PointPillars weights (f32, and an f16 copy): masks agree with
//! `rank`, the pruned file differs from its input only in the zeroed entries, metadata is
//! carried, inputs are never overwritten, bad allocations are named, and a NumPy user
//! (`tests/python/check_masks.py`, numpy + safetensors only) gets the same pruned weights by
//! applying the masks.
//!
//! On the bundled demo model: masks files are read back for a detector (`read_masks`) and
//! every wrong file is refused by name (float, int, non-0/1, a bias or BatchNorm key, an
//! unknown key, a wrong shape, the weights themselves, an empty file); recovered weights
//! (`write_recovered`) round-trip through `Detector::load` exactly in f32 and to f16 rounding
//! in f16, keep the source's layout, and pass `check_masks.py --recovered`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::util::{TempDir, demo};
use pruneview::detect::Detector;
use pruneview::io::{OutTensor, WriteError, write_safetensors};
use pruneview::model::Weights;
use pruneview::model::weights::to_f32;
use pruneview::nn::Tensor;
use pruneview::prune::allocation_file::{ALLOCATION_FORMAT, LayerSparsity};
use pruneview::prune::curves::{
    CURVES_FORMAT, Calibration, GroupValues, LayerCurve, Measured, ModelInfo,
};
use pruneview::prune::export::{
    CSV_HEADER, ExportError, LayerMask, META_ALLOCATION, META_SOURCE_SHA256, Orders, apply_masks,
    build_masks, csv_report, read_masks, sha256_file, write_csv, write_masks, write_pruned,
    write_recovered,
};
use pruneview::prune::{Allocation, Budget, BudgetKind, Curves, Lambdas, Ranking, rank};

fn pp_weights() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/pointpillar_kitti_000008/weights.safetensors")
}

/// Layers at the edges (0 and 1), ordinary levels, one whose `s * n` sits just under an
/// integer in floating point (0.29), a 2-d linear and a bias.
const LAYERS: &[(&str, f64)] = &[
    ("vfe.pfn_layers.0.linear.weight", 0.3),
    ("backbone_2d.blocks.0.1.weight", 0.77),
    ("backbone_2d.blocks.2.10.weight", 0.29),
    ("backbone_2d.deblocks.1.0.weight", 1.0),
    ("dense_head.conv_cls.weight", 0.0),
    ("dense_head.conv_dir_cls.weight", 0.5),
];

fn allocation(layers: &[(&str, f64)]) -> Allocation {
    Allocation {
        format: ALLOCATION_FORMAT.into(),
        method: pruneview::prune::alloc::Method::Uniform,
        budget: Budget {
            kind: BudgetKind::Flops,
            keep: 0.5,
        },
        model: ModelInfo {
            name: "pointpillar".into(),
            weights_sha256: String::new(),
        },
        ranking: Ranking::Magnitude,
        lambda: Lambdas {
            confidence: 1.0,
            locality: 0.5,
        },
        flops_kept: 0.5,
        params_kept: 0.5,
        flops_dense: 1e9,
        flops: 5e8,
        predicted_distortion: 0.0,
        layers: layers
            .iter()
            .map(|&(name, sparsity)| LayerSparsity {
                name: name.into(),
                sparsity,
            })
            .collect(),
        layer_cap: None,
        constraints: Vec::new(),
    }
}

/// The reference weights with every f32 tensor converted to f16 (int64 buffers untouched)
/// and a `pruneview.config` entry in `__metadata__`, which the pruned file must keep.
fn f16_copy(dir: &Path) -> PathBuf {
    let meta = HashMap::from([(
        "pruneview.config".to_string(),
        r#"{"MODEL": {"NAME": "PointPillar"}}"#.to_string(),
    )]);
    f16_copy_of(&pp_weights(), &dir.join("half.safetensors"), meta)
}

/// `src` with every f32 tensor converted to f16 (rounded to nearest), the others untouched,
/// and `meta` as `__metadata__`.
fn f16_copy_of(src: &Path, path: &Path, meta: HashMap<String, String>) -> PathBuf {
    let w = Weights::open(src).unwrap();
    let tensors: Vec<OutTensor> = w
        .keys()
        .into_iter()
        .map(|k| {
            let (dtype, shape, bytes) = w.raw(&k).unwrap();
            let mut t = OutTensor {
                name: k,
                dtype,
                shape: shape.to_vec(),
                bytes: bytes.to_vec(),
            };
            if dtype == safetensors::Dtype::F32 {
                t.bytes = bytes
                    .chunks_exact(4)
                    .flat_map(|b| {
                        half::f16::from_f32(f32::from_le_bytes(b.try_into().unwrap())).to_le_bytes()
                    })
                    .collect();
                t.dtype = safetensors::Dtype::F16;
            }
            t
        })
        .collect();
    write_safetensors(path, &tensors, Some(meta), &[]).unwrap();
    path.to_path_buf()
}

/// The header of a safetensors file, in file order (`serde_json` preserves order here).
fn header(path: &Path) -> serde_json::Map<String, serde_json::Value> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    serde_json::from_slice(&bytes[8..8 + n]).unwrap()
}

fn tensor_keys(path: &Path) -> Vec<String> {
    header(path)
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect()
}

struct Exported {
    masks: Vec<LayerMask>,
    masks_path: PathBuf,
    pruned_path: PathBuf,
}

fn export(weights_path: &Path, dir: &Path, tag: &str) -> Exported {
    let w = Weights::open(weights_path).unwrap();
    let alloc = allocation(LAYERS);
    let masks = build_masks(&alloc, &w, Orders::Magnitude).unwrap();
    let masks_path = dir.join(format!("{tag}.masks.safetensors"));
    let pruned_path = dir.join(format!("{tag}.pruned.safetensors"));
    let sha = sha256_file(weights_path).unwrap();
    write_masks(&masks_path, &masks, &alloc, &sha, &[weights_path]).unwrap();
    write_pruned(&pruned_path, &w, &masks, &alloc, &[weights_path]).unwrap();
    Exported {
        masks,
        masks_path,
        pruned_path,
    }
}

/// Masks agree with `rank`; the pruned file has the input's keys in the input's order, and
/// its bytes equal the input's except the pruned elements, which are all-zero bytes.
fn check_export(weights_path: &Path, e: &Exported) {
    let w = Weights::open(weights_path).unwrap();
    let alloc = allocation(LAYERS);
    assert_eq!(e.masks.len(), LAYERS.len());
    for (m, &(name, s)) in e.masks.iter().zip(LAYERS) {
        assert_eq!(m.name, name);
        let (dtype, shape, bytes) = w.raw(name).unwrap();
        assert_eq!(m.shape, shape);
        let n = m.mask.len();
        assert_eq!(n, shape.iter().product::<usize>());
        let zeros = m.mask.iter().filter(|&&v| v == 0).count();
        assert_eq!(zeros, rank::pruned_count(s, n), "{name}");
        assert_eq!(m.pruned, zeros, "{name}");
        let order = rank::magnitude_order(&to_f32(dtype, bytes).unwrap());
        assert_eq!(m.mask, rank::mask(&order, s), "{name}");
    }
    // floor(s * n) with the tolerance: 0.29 * 589824 = 171048.96.
    assert_eq!(e.masks[2].pruned, 171_048);
    assert_eq!(e.masks[3].kept(), 0);
    assert_eq!(e.masks[4].pruned, 0);

    // The masks file: U8 tensors of the weights' shapes, holding exactly the masks.
    let mf = Weights::open(&e.masks_path).unwrap();
    assert_eq!(mf.keys().len(), LAYERS.len());
    for m in &e.masks {
        let (dtype, shape, bytes) = mf.raw(&m.name).unwrap();
        assert_eq!(dtype, safetensors::Dtype::U8);
        assert_eq!(shape, m.shape.as_slice());
        assert_eq!(bytes, m.mask.as_slice());
    }
    let meta = mf.metadata();
    let stored: Allocation = serde_json::from_str(&meta[META_ALLOCATION]).unwrap();
    assert_eq!(stored, alloc);
    assert_eq!(meta[META_SOURCE_SHA256], sha256_file(weights_path).unwrap());
    assert_eq!(meta[META_SOURCE_SHA256].len(), 64);

    // The pruned file.
    let p = Weights::open(&e.pruned_path).unwrap();
    assert_eq!(tensor_keys(&e.pruned_path), tensor_keys(weights_path));
    let masks: HashMap<&str, &LayerMask> = e.masks.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut zeroed = 0;
    for key in w.keys() {
        let (dtype, shape, bytes) = w.raw(&key).unwrap();
        let (pdtype, pshape, pbytes) = p.raw(&key).unwrap();
        assert_eq!((dtype, shape), (pdtype, pshape), "{key}");
        assert_eq!(bytes.len(), pbytes.len(), "{key}");
        let Some(m) = masks.get(key.as_str()) else {
            assert_eq!(bytes, pbytes, "{key} must be copied byte for byte");
            continue;
        };
        let size = bytes.len() / m.mask.len();
        for (i, &keep) in m.mask.iter().enumerate() {
            let (a, b) = (
                &bytes[i * size..(i + 1) * size],
                &pbytes[i * size..(i + 1) * size],
            );
            if keep == 1 {
                assert_eq!(a, b, "{key}[{i}] is kept and must be unchanged");
            } else {
                assert!(b.iter().all(|&x| x == 0), "{key}[{i}] must be +0.0");
                zeroed += 1;
            }
        }
    }
    assert_eq!(zeroed, e.masks.iter().map(|m| m.pruned).sum::<usize>());
    // The input's metadata is kept and the allocation added.
    for (k, v) in w.metadata() {
        assert_eq!(p.metadata().get(k), Some(v), "metadata `{k}` must be kept");
    }
    let stored: Allocation = serde_json::from_str(&p.metadata()[META_ALLOCATION]).unwrap();
    assert_eq!(stored, alloc);
}

#[test]
fn f32_masks_follow_rank_and_pruned_file_changes_only_pruned_entries() {
    let dir = TempDir::new("f32");
    let e = export(&pp_weights(), &dir, "f32");
    check_export(&pp_weights(), &e);
    // Deterministic: the same inputs give the same bytes.
    let again = export(&pp_weights(), &dir, "again");
    for (a, b) in [
        (&e.masks_path, &again.masks_path),
        (&e.pruned_path, &again.pruned_path),
    ] {
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    }
}

#[test]
fn f16_weights_are_pruned_in_f16_and_keep_their_metadata() {
    let dir = TempDir::new("f16");
    let half = f16_copy(&dir);
    let e = export(&half, &dir, "f16");
    check_export(&half, &e);
    let p = Weights::open(&e.pruned_path).unwrap();
    assert_eq!(
        p.raw("backbone_2d.blocks.0.1.weight").unwrap().0,
        safetensors::Dtype::F16
    );
    assert!(p.metadata()["pruneview.config"].contains("PointPillar"));
}

#[test]
fn given_orders_are_used_and_checked() {
    let w = Weights::open(&pp_weights()).unwrap();
    let key = "dense_head.conv_dir_cls.weight";
    const N: u32 = 12 * 384;
    let alloc = allocation(&[(key, 0.5)]);
    let reversed: Vec<u32> = (0..N).rev().collect();
    let orders = HashMap::from([(key.to_string(), reversed)]);
    let masks = build_masks(&alloc, &w, Orders::Given(&orders)).unwrap();
    let mut want = vec![1u8; N as usize];
    want[N as usize / 2..].fill(0);
    assert_eq!(masks[0].mask, want);

    let mut dup: Vec<u32> = (0..N).collect();
    dup[5] = 4;
    let orders = HashMap::from([(key.to_string(), dup)]);
    let err = build_masks(&alloc, &w, Orders::Given(&orders)).unwrap_err();
    assert!(
        matches!(err, ExportError::BadOrder { .. }) && err.to_string().contains(key),
        "{err}"
    );
    let short = HashMap::from([(key.to_string(), (0..N - 1).collect::<Vec<u32>>())]);
    let err = build_masks(&alloc, &w, Orders::Given(&short)).unwrap_err();
    assert!(
        err.to_string().contains(&format!("{} entries", N - 1)),
        "{err}"
    );
    let err = build_masks(&alloc, &w, Orders::Given(&HashMap::new())).unwrap_err();
    assert!(err.to_string().contains("no order"), "{err}");
}

#[test]
fn unknown_and_non_float_layers_are_named() {
    let w = Weights::open(&pp_weights()).unwrap();
    let key = "backbone_2d.blocks.9.1.weight";
    let err = build_masks(&allocation(&[(key, 0.5)]), &w, Orders::Magnitude).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ExportError::MissingLayer { .. }), "{msg}");
    assert!(
        msg.contains(key) && msg.contains("weights.safetensors"),
        "{msg}"
    );

    let err = build_masks(&allocation(&[("global_step", 0.5)]), &w, Orders::Magnitude).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("global_step") && msg.contains("I64") && msg.contains("weights.safetensors"),
        "{msg}"
    );

    let dup = allocation(&[
        ("dense_head.conv_box.weight", 0.5),
        ("dense_head.conv_box.weight", 0.1),
    ]);
    let err = build_masks(&dup, &w, Orders::Magnitude).unwrap_err();
    assert!(matches!(err, ExportError::DuplicateLayer { .. }), "{err}");

    // BatchNorm parameters and biases are not prunable layers; nor is an empty allocation.
    for key in ["backbone_2d.blocks.0.2.weight", "dense_head.conv_box.bias"] {
        let err = build_masks(&allocation(&[(key, 0.5)]), &w, Orders::Magnitude).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ExportError::NotPrunable { .. }), "{msg}");
        assert!(
            msg.contains(key) && msg.contains("not a conv or linear"),
            "{msg}"
        );
    }
    let err = build_masks(&allocation(&[]), &w, Orders::Magnitude).unwrap_err();
    assert!(matches!(err, ExportError::EmptyAllocation), "{err}");
}

#[test]
fn masks_that_do_not_match_the_allocation_are_refused() {
    let w = Weights::open(&pp_weights()).unwrap();
    let dir = TempDir::new("mismatch");
    let alloc = allocation(LAYERS);
    let mut masks = build_masks(&alloc, &w, Orders::Magnitude).unwrap();
    masks.pop();
    let err = write_pruned(&dir.join("p.safetensors"), &w, &masks, &alloc, &[]).unwrap_err();
    assert!(
        err.to_string().contains("dense_head.conv_dir_cls.weight"),
        "{err}"
    );
    assert!(!dir.join("p.safetensors").exists());
}

#[test]
fn refuses_to_overwrite_the_input_weights() {
    let dir = TempDir::new("overwrite");
    let copy = dir.join("weights.safetensors");
    std::fs::copy(pp_weights(), &copy).unwrap();
    let original = std::fs::read(&copy).unwrap();
    let w = Weights::open(&copy).unwrap();
    let alloc = allocation(LAYERS);
    let masks = build_masks(&alloc, &w, Orders::Magnitude).unwrap();
    let inputs: &[&Path] = &[&copy];
    let sha = sha256_file(&copy).unwrap();
    let errs = [
        write_pruned(&copy, &w, &masks, &alloc, inputs).unwrap_err(),
        write_masks(&copy, &masks, &alloc, &sha, inputs).unwrap_err(),
        write_csv(&copy, &alloc, &masks, None, inputs).unwrap_err(),
    ];
    for err in errs {
        assert!(
            matches!(
                err,
                ExportError::Write(WriteError::WouldOverwriteInput { .. })
            ),
            "{err}"
        );
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    }
    drop(w);
    assert_eq!(std::fs::read(&copy).unwrap(), original);
}

#[test]
fn csv_reports_every_layer_with_curve_values() {
    let w = Weights::open(&pp_weights()).unwrap();
    let alloc = allocation(LAYERS);
    let masks = build_masks(&alloc, &w, Orders::Magnitude).unwrap();
    let curves = Curves {
        format: CURVES_FORMAT.into(),
        model: alloc.model.clone(),
        calibration: Calibration {
            scans: 1,
            probes: 1,
            scan_ids: vec![],
            ranking: Ranking::Magnitude,
            distortion: Default::default(),
            normalization: vec![],
            seed: 0,
        },
        layers: vec![LayerCurve {
            name: "vfe.pfn_layers.0.linear.weight".into(),
            params: 640,
            flops: 1000.0,
            shape: vec![64, 10],
            sparsity: vec![0.0, 0.5, 1.0],
            distortion: GroupValues {
                confidence: vec![0.0, 1.0, 3.0],
                locality: vec![0.0, 2.0, 4.0],
            },
            sum: None,
            measured: Measured::default(),
        }],
        fidelity: None,
    };
    curves.validate().unwrap();

    let text = csv_report(&alloc, &masks, Some(&curves)).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(text.lines().next(), Some(CSV_HEADER));
    assert_eq!(rows.len(), 1 + LAYERS.len());
    let num = |s: &str| s.parse::<f64>().unwrap();
    // With curves: flops, (1 - s) * flops and the lambda-combined curve (conf + 0.5 loc =
    // [0, 2, 5]) interpolated at s = 0.3.
    let r = &rows[1];
    assert_eq!(&r[..3], ["vfe.pfn_layers.0.linear.weight", "64x10", "640"]);
    assert_eq!(num(r[3]), 1000.0);
    assert_eq!(num(r[4]), 0.3);
    assert_eq!((r[5], r[6]), ("192", "448"));
    assert!((num(r[7]) - 700.0).abs() < 1e-9, "{}", r[7]);
    assert!((num(r[8]) - 1.2).abs() < 1e-12, "{}", r[8]);
    // Without a curve: the FLOPs and distortion cells are empty.
    let r = &rows[2];
    assert_eq!(r[0], "backbone_2d.blocks.0.1.weight");
    assert_eq!(r[1], "64x64x3x3");
    assert_eq!((r[2], r[5], r[6]), ("36864", "28385", "8479"));
    assert_eq!((r[3], r[7], r[8]), ("", "", ""));
    for (row, m) in rows[1..].iter().zip(&masks) {
        assert_eq!(row.len(), 9);
        assert_eq!(row[5].parse::<usize>().unwrap(), m.pruned);
    }

    let dir = TempDir::new("csv");
    let path = dir.join("report.csv");
    write_csv(&path, &alloc, &masks, Some(&curves), &[]).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    // Curves of other weights would give their FLOPs to these masks: refused.
    let mut other = curves.clone();
    other.model.weights_sha256 = "another model".into();
    let elsewhere = dir.join("other.csv");
    let err = write_csv(&elsewhere, &alloc, &masks, Some(&other), &[]).unwrap_err();
    assert!(
        matches!(err, ExportError::CurvesOfAnotherModel { .. }),
        "{err}"
    );
    assert!(!elsewhere.exists());
    let bare = csv_report(&alloc, &masks, None).unwrap();
    assert!(
        bare.lines()
            .skip(1)
            .all(|l| l.split(',').nth(3) == Some(""))
    );
}

/// The interpreter for the NumPy check: `PRUNEVIEW_PYTHON`, else `python3`. It must have
/// numpy and safetensors; a missing one fails the test (no silent skip).
fn python() -> String {
    let py = std::env::var("PRUNEVIEW_PYTHON").unwrap_or_else(|_| "python3".into());
    let fix = "run `bash scripts/test.sh` (it installs numpy and safetensors), or set \
               PRUNEVIEW_PYTHON to a Python that has them";
    match Command::new(&py)
        .args(["-c", "import numpy, safetensors.numpy"])
        .output()
    {
        Ok(o) if o.status.success() => py,
        Ok(o) => panic!(
            "`{py}` cannot import numpy and safetensors ({}); {fix}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => panic!("cannot run `{py}` ({e}); {fix}"),
    }
}

#[test]
fn numpy_user_reproduces_the_pruned_weights_from_the_masks() {
    let py = python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/check_masks.py");
    let dir = TempDir::new("python");
    let half = f16_copy(&dir);
    for (weights, tag) in [(pp_weights(), "f32"), (half, "f16")] {
        let e = export(&weights, &dir, tag);
        let out = Command::new(&py)
            .arg(&script)
            .args([&e.masks_path, &weights, &e.pruned_path])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "check_masks.py failed on {tag}:\n{stdout}\n{stderr}"
        );
        println!("{tag}:\n{stdout}");
        assert!(stdout.contains("6 masks"), "{stdout}");
        assert!(stdout.contains("source sha256 ok"), "{stdout}");

        // And the check does catch a wrong file: the masks against the weights as pruned.
        let out = Command::new(&py)
            .arg(&script)
            .args([&e.masks_path, &e.pruned_path, &weights])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "check_masks.py must fail on swapped files"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Masks read back for a detector, and recovered weights, on the bundled demo model.

/// Unit weights of the demo at the edges (0 and 1) and ordinary levels: a linear, convs, a
/// transposed conv and a head conv.
const DEMO_LAYERS: &[(&str, f64)] = &[
    ("vfe.pfn_layers.0.linear.weight", 0.3),
    ("backbone_2d.blocks.0.1.weight", 0.5),
    ("backbone_2d.blocks.2.10.weight", 0.29),
    ("backbone_2d.deblocks.1.0.weight", 1.0),
    ("backbone_2d.deblocks.2.0.weight", 0.6),
    ("dense_head.conv_cls.weight", 0.0),
    ("dense_head.conv_box.weight", 0.7),
];

/// Builds and writes the demo-layer masks of `weights` (magnitude order) to `path`.
fn write_demo_masks(weights: &Path, path: &Path) -> Vec<LayerMask> {
    let w = Weights::open(weights).unwrap();
    let alloc = allocation(DEMO_LAYERS);
    let masks = build_masks(&alloc, &w, Orders::Magnitude).unwrap();
    let sha = sha256_file(weights).unwrap();
    write_masks(path, &masks, &alloc, &sha, &[weights]).unwrap();
    masks
}

/// A tiny masks file with the given tensors.
fn masks_file(dir: &Path, name: &str, tensors: Vec<OutTensor>) -> PathBuf {
    let path = dir.join(name);
    write_safetensors(&path, &tensors, None, &[]).unwrap();
    path
}

fn raw_tensor(name: &str, dtype: safetensors::Dtype, shape: &[usize], bytes: Vec<u8>) -> OutTensor {
    OutTensor {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
        bytes,
    }
}

#[test]
fn masks_read_back_per_unit_and_apply() {
    let dir = TempDir::new("read-masks");
    let path = dir.join("masks.safetensors");
    let written = write_demo_masks(&demo(), &path);
    let mut det = Detector::load(None, &demo()).unwrap();
    let read = read_masks(&path, &det).unwrap();
    let units = det.units();
    assert_eq!(read.len(), units.len());
    let by_name: HashMap<&str, &LayerMask> = written.iter().map(|m| (m.name.as_str(), m)).collect();
    for (u, m) in units.iter().zip(&read) {
        match by_name.get(u.weight_name().as_str()) {
            Some(w) => assert_eq!(m.as_deref(), Some(w.mask.as_slice()), "{}", u.weight_name()),
            None => assert!(m.is_none(), "{} has no mask in the file", u.weight_name()),
        }
    }
    assert_eq!(read.iter().flatten().count(), DEMO_LAYERS.len());

    // A BOOL file with the same 0/1 bytes reads the same.
    let bools = masks_file(
        &dir,
        "bool.safetensors",
        written
            .iter()
            .map(|m| raw_tensor(&m.name, safetensors::Dtype::BOOL, &m.shape, m.mask.clone()))
            .collect(),
    );
    assert_eq!(read_masks(&bools, &det).unwrap(), read);

    // Applying: pruned weights become 0.0, kept ones keep their exact value, other units
    // are untouched.
    let before = det.clone();
    assert_eq!(apply_masks(&mut det, &read).unwrap(), DEMO_LAYERS.len());
    for ((a, b), m) in before.units().iter().zip(det.units()).zip(&read) {
        match m {
            None => assert_eq!(a.weight.data, b.weight.data),
            Some(m) => {
                for ((&x, &y), &k) in a.weight.data.iter().zip(&b.weight.data).zip(m) {
                    assert_eq!(y.to_bits(), if k == 0 { 0 } else { x.to_bits() });
                }
            }
        }
    }

    // An all-ones U8 mask changes nothing (an all-ones F32 one is refused, below).
    let name = "dense_head.conv_box.weight";
    let ones = masks_file(
        &dir,
        "ones.safetensors",
        vec![raw_tensor(
            name,
            safetensors::Dtype::U8,
            &[42, 192, 1, 1],
            vec![1; 42 * 192],
        )],
    );
    let mut dense = before.clone();
    let m = read_masks(&ones, &dense).unwrap();
    assert_eq!(apply_masks(&mut dense, &m).unwrap(), 1);
    for (a, b) in before.units().iter().zip(dense.units()) {
        assert_eq!(a.weight.data, b.weight.data, "{}", a.weight_name());
    }

    // The wrong number of masks for the model is refused.
    let err = apply_masks(&mut dense, &m[1..]).unwrap_err();
    assert!(err.to_string().contains("masks were given"), "{err}");
}

#[test]
fn wrong_masks_files_are_refused_by_name() {
    use safetensors::Dtype::{BOOL, F16, I64, U8};
    let dir = TempDir::new("bad-masks");
    let det = Detector::load(None, &demo()).unwrap();
    let key = "dense_head.conv_cls.weight";
    let shape = [18, 192, 1, 1];
    let n = 18 * 192;
    let f16_one = half::f16::from_f32(1.0).to_le_bytes();
    let mut two = vec![1u8; n];
    two[7] = 2;
    let mut bool255 = vec![0u8; n];
    bool255[100] = 255;
    let cases: Vec<(&str, Vec<OutTensor>, Vec<&str>)> = vec![
        (
            "f32.safetensors",
            vec![OutTensor::f32(key, &shape, &vec![1.0; n])],
            vec![
                key,
                "dtype F32",
                "masks must be U8 or BOOL (0 pruned, 1 kept)",
            ],
        ),
        (
            "f16.safetensors",
            vec![raw_tensor(key, F16, &shape, f16_one.repeat(n))],
            vec![key, "dtype F16", "masks must be U8 or BOOL"],
        ),
        (
            "i64.safetensors",
            vec![raw_tensor(key, I64, &shape, 1i64.to_le_bytes().repeat(n))],
            vec![key, "dtype I64", "masks must be U8 or BOOL"],
        ),
        (
            "two.safetensors",
            vec![raw_tensor(key, U8, &shape, two)],
            vec![
                key,
                "holds 2 at flat index 7",
                "must be 0 (pruned) or 1 (kept)",
            ],
        ),
        (
            "bool255.safetensors",
            vec![raw_tensor(key, BOOL, &shape, bool255)],
            vec![
                key,
                "holds 255 at flat index 100",
                "must be 0 (pruned) or 1 (kept)",
            ],
        ),
        (
            "bn.safetensors",
            vec![raw_tensor(
                "backbone_2d.blocks.0.2.weight",
                U8,
                &[32],
                vec![1; 32],
            )],
            vec![
                "backbone_2d.blocks.0.2.weight",
                "BatchNorm parameter",
                "not a prunable weight of this model",
            ],
        ),
        (
            "bias.safetensors",
            vec![raw_tensor(
                "dense_head.conv_cls.bias",
                U8,
                &[18],
                vec![1; 18],
            )],
            vec![
                "dense_head.conv_cls.bias",
                "is a bias",
                "not a prunable weight of this model",
            ],
        ),
        (
            "unknown.safetensors",
            vec![
                raw_tensor(key, U8, &shape, vec![1; n]),
                raw_tensor("backbone_2d.blocks.9.1.weight", U8, &[4], vec![1; 4]),
            ],
            vec![
                "backbone_2d.blocks.9.1.weight",
                "not a prunable weight of this model",
            ],
        ),
        (
            "shape.safetensors",
            vec![raw_tensor(key, U8, &[18, 192], vec![1; n])],
            vec![key, "shape [18, 192]", "[18, 192, 1, 1]"],
        ),
        (
            "empty.safetensors",
            vec![],
            vec![
                "no mask for any weight of this model",
                "vfe.pfn_layers.0.linear.weight",
            ],
        ),
    ];
    for (file, tensors, wants) in cases {
        let path = masks_file(&dir, file, tensors);
        let err = read_masks(&path, &det).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(file),
            "{file}: the message must name the file: {msg}"
        );
        for want in wants {
            assert!(msg.contains(want), "{file}: expected `{want}` in: {msg}");
        }
    }

    // The weights file given as masks: refused by its dtype.
    let err = read_masks(&demo(), &det).unwrap_err().to_string();
    assert!(
        err.contains("demo_pointpillar.safetensors")
            && err.contains("masks must be U8 or BOOL")
            && err.contains("not a weights file"),
        "{err}"
    );
    // A zero-byte file: not a safetensors file, named.
    let zero = dir.join("zero.safetensors");
    std::fs::write(&zero, b"").unwrap();
    let err = read_masks(&zero, &det).unwrap_err().to_string();
    assert!(
        err.contains("zero.safetensors") && err.contains("0 bytes"),
        "{err}"
    );
}

/// The demo (or a copy of it) loaded, with the demo-layer masks written beside it, read
/// back and applied.
fn masked_demo(weights: &Path, masks_path: &Path) -> (Detector, Vec<Option<Vec<u8>>>) {
    write_demo_masks(weights, masks_path);
    let mut det = Detector::load(None, weights).unwrap();
    let masks = read_masks(masks_path, &det).unwrap();
    apply_masks(&mut det, &masks).unwrap();
    (det, masks)
}

/// What recovery does, in the large: every kept weight, bias, BatchNorm parameter and
/// statistic moves (by amounts that are not f16-representable), pruned weights stay 0.
fn perturb(det: &mut Detector) {
    for (i, u) in det.units_mut().into_iter().enumerate() {
        let k = 1.0 + 0.013 * (i as f32 + 1.0);
        let w: Vec<f32> = u
            .weight
            .data
            .iter()
            .map(|&w| if w == 0.0 { 0.0 } else { w * k + 1e-4 })
            .collect();
        if let Some(b) = &mut u.bias {
            b.iter_mut().for_each(|v| *v = *v * k - 0.0123);
        }
        if let Some(bn) = &mut u.bn {
            let b = &mut bn.bn;
            b.gamma.iter_mut().for_each(|v| *v *= 0.97);
            b.beta.iter_mut().for_each(|v| *v += 0.031);
            b.mean.iter_mut().for_each(|v| *v = *v * 1.01 + 0.017);
            b.var.iter_mut().for_each(|v| *v *= 1.23);
        }
        let shape = u.weight.shape.clone();
        u.set_weight(Tensor::from_vec(&shape, w)).unwrap();
    }
}

/// Every parameter of every unit: (name, values).
fn params(det: &Detector) -> Vec<(String, Vec<f32>)> {
    let mut out = Vec::new();
    for u in det.units() {
        out.push((u.weight_name(), u.weight.data.clone()));
        if let Some(b) = &u.bias {
            out.push((format!("{}.bias", u.prefix), b.clone()));
        }
        if let Some(bn) = &u.bn {
            let b = &bn.bn;
            for (name, v) in [
                ("weight", &b.gamma),
                ("bias", &b.beta),
                ("running_mean", &b.mean),
                ("running_var", &b.var),
            ] {
                out.push((format!("{}.{name}", bn.prefix), v.clone()));
            }
        }
    }
    out
}

/// The recovered file has the source's keys in the source's order with the same dtypes and
/// shapes; the tensors that are no unit's parameter are byte-identical.
fn check_layout(source: &Path, out: &Path, det: &Detector) {
    assert_eq!(tensor_keys(out), tensor_keys(source));
    let (src, rec) = (header(source), header(out));
    for key in tensor_keys(source) {
        assert_eq!(src[&key]["dtype"], rec[&key]["dtype"], "{key}");
        assert_eq!(src[&key]["shape"], rec[&key]["shape"], "{key}");
    }
    let names: std::collections::HashSet<String> =
        params(det).into_iter().map(|(n, _)| n).collect();
    let (s, r) = (Weights::open(source).unwrap(), Weights::open(out).unwrap());
    let mut copied = 0;
    for key in s.keys().into_iter().filter(|k| !names.contains(k)) {
        assert_eq!(
            s.raw(&key),
            r.raw(&key),
            "{key} must be copied byte for byte"
        );
        copied += 1;
    }
    // The demo's 20 num_batches_tracked and global_step.
    assert_eq!(copied, 21);
}

fn recovery_metadata() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            META_ALLOCATION.to_string(),
            allocation(DEMO_LAYERS).to_json(),
        ),
        (
            "pruneview.recovery".to_string(),
            r#"{"method": "test"}"#.to_string(),
        ),
    ])
}

#[test]
fn recovered_f32_weights_round_trip_exactly() {
    let dir = TempDir::new("recovered-f32");
    let (mut det, masks) = masked_demo(&demo(), &dir.join("masks.safetensors"));
    perturb(&mut det);
    let out = dir.join("recovered.safetensors");
    let source = Weights::open(&demo()).unwrap();
    let meta = recovery_metadata();
    write_recovered(&out, &source, &det, &masks, &meta, &[&demo()]).unwrap();

    // Loads without a config, and every parameter is exactly what the detector held.
    let back = Detector::load(None, &out).unwrap();
    let (want, got) = (params(&det), params(&back));
    assert_eq!(want.len(), got.len());
    for ((name, a), (bname, b)) in want.iter().zip(&got) {
        assert_eq!(name, bname);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(a), bits(b), "{name}");
    }
    // Pruned weights are +0.0 exactly, and some kept ones really moved.
    for (u, m) in back.units().iter().zip(&masks) {
        if let Some(m) = m {
            for (w, &k) in u.weight.data.iter().zip(m) {
                if k == 0 {
                    assert_eq!(w.to_bits(), 0, "{}", u.weight_name());
                }
            }
        }
    }
    let orig = Detector::load(None, &demo()).unwrap();
    assert_ne!(orig.units()[0].weight.data, back.units()[0].weight.data);
    check_layout(&demo(), &out, &det);

    // Metadata: the source's (its config), plus the entries given.
    let r = Weights::open(&out).unwrap();
    assert_eq!(
        r.metadata()["pruneview.config"],
        source.metadata()["pruneview.config"]
    );
    for (k, v) in &meta {
        assert_eq!(r.metadata().get(k), Some(v), "{k}");
    }
    // Deterministic bytes.
    let again = dir.join("again.safetensors");
    write_recovered(&again, &source, &det, &masks, &meta, &[&demo()]).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn recovered_f16_weights_round_trip_to_f16_rounding() {
    let dir = TempDir::new("recovered-f16");
    let src = Weights::open(&demo()).unwrap();
    let half_path = f16_copy_of(
        &demo(),
        &dir.join("half.safetensors"),
        src.metadata().clone().into_iter().collect(),
    );
    let (mut det, masks) = masked_demo(&half_path, &dir.join("masks.safetensors"));
    perturb(&mut det);
    let out = dir.join("recovered.safetensors");
    let source = Weights::open(&half_path).unwrap();
    write_recovered(
        &out,
        &source,
        &det,
        &masks,
        &recovery_metadata(),
        &[&half_path],
    )
    .unwrap();
    let back = Detector::load(None, &out).unwrap();
    let mut moved = 0;
    for ((name, a), (_, b)) in params(&det).iter().zip(params(&back)) {
        for (&x, &y) in a.iter().zip(&b) {
            // Rounded to nearest: exactly f16(x), and within half an f16 ulp of x.
            assert_eq!(y, half::f16::from_f32(x).to_f32(), "{name}");
            assert!(
                (y - x).abs() <= x.abs() * 2f32.powi(-11) + 2f32.powi(-25),
                "{name}"
            );
            moved += usize::from(x != y);
        }
    }
    assert!(moved > 0, "the perturbation is not f16-representable");
    check_layout(&half_path, &out, &det);
    let h = header(&out);
    assert_eq!(h["backbone_2d.blocks.0.2.running_var"]["dtype"], "F16");
}

#[test]
fn recovered_writes_refuse_bad_inputs_and_never_overwrite() {
    let dir = TempDir::new("recovered-bad");
    let copy = dir.join("weights.safetensors");
    std::fs::copy(demo(), &copy).unwrap();
    let original = std::fs::read(&copy).unwrap();
    let (det, masks) = masked_demo(&copy, &dir.join("masks.safetensors"));
    let w = Weights::open(&copy).unwrap();
    let meta = BTreeMap::new();

    // Onto the input: refused, the input unchanged, no temporary file left.
    let err = write_recovered(&copy, &w, &det, &masks, &meta, &[&copy]).unwrap_err();
    assert!(
        matches!(
            err,
            ExportError::Write(WriteError::WouldOverwriteInput { .. })
        ),
        "{err}"
    );
    assert_eq!(std::fs::read(&copy).unwrap(), original);
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["masks.safetensors", "weights.safetensors"]);

    // A revived pruned weight is a bug: named, nothing written.
    let out = dir.join("out.safetensors");
    let (i, m) = masks.iter().enumerate().find(|(_, m)| m.is_some()).unwrap();
    let at = m.as_ref().unwrap().iter().position(|&k| k == 0).unwrap();
    let mut revived = det.clone();
    let unit = &mut revived.units_mut()[i];
    let mut wt = unit.weight.clone();
    wt.data[at] = 0.5;
    unit.set_weight(wt).unwrap();
    let name = det.units()[i].weight_name();
    let err = write_recovered(&out, &w, &revived, &masks, &meta, &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&name) && err.contains(&format!("flat index {at}")) && err.contains("pruned"),
        "{err}"
    );
    assert!(!out.exists());

    // A parameter the source lacks, and one the source holds as an integer: named.
    let src = Weights::open(&demo()).unwrap();
    let without = |skip: &str, as_int: Option<&str>| -> Vec<OutTensor> {
        src.keys()
            .into_iter()
            .filter(|k| k != skip)
            .map(|k| {
                let (dtype, shape, bytes) = src.raw(&k).unwrap();
                if Some(k.as_str()) == as_int {
                    let n = bytes.len() / 4;
                    return raw_tensor(&k, safetensors::Dtype::I64, shape, vec![0; n * 8]);
                }
                raw_tensor(&k, dtype, shape, bytes.to_vec())
            })
            .collect()
    };
    let missing = masks_file(
        &dir,
        "missing.safetensors",
        without("dense_head.conv_cls.bias", None),
    );
    let err = write_recovered(
        &out,
        &Weights::open(&missing).unwrap(),
        &det,
        &masks,
        &meta,
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("missing.safetensors") && err.contains("dense_head.conv_cls.bias"),
        "{err}"
    );
    let key = "vfe.pfn_layers.0.norm.running_var";
    let int = masks_file(&dir, "int.safetensors", without("", Some(key)));
    let err = write_recovered(
        &out,
        &Weights::open(&int).unwrap(),
        &det,
        &masks,
        &meta,
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("int.safetensors") && err.contains(key) && err.contains("I64"),
        "{err}"
    );
    // Masks for another model (the wrong count) are refused.
    let err = write_recovered(&out, &w, &det, &masks[1..], &meta, &[]).unwrap_err();
    assert!(err.to_string().contains("masks were given"), "{err}");
    assert!(!out.exists());
}

#[test]
fn numpy_user_checks_a_recovered_file() {
    let py = python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/check_masks.py");
    let dir = TempDir::new("python-recovered");
    let masks_path = dir.join("masks.safetensors");
    let (mut det, masks) = masked_demo(&demo(), &masks_path);
    perturb(&mut det);
    let out = dir.join("recovered.safetensors");
    let source = Weights::open(&demo()).unwrap();
    write_recovered(
        &out,
        &source,
        &det,
        &masks,
        &recovery_metadata(),
        &[&demo()],
    )
    .unwrap();
    let run = |args: &[&Path]| {
        let o = Command::new(&py)
            .arg(&script)
            .arg("--recovered")
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), text)
    };
    let (ok, text) = run(&[&masks_path, &demo(), &out]);
    assert!(ok, "check_masks.py --recovered failed:\n{text}");
    println!("{text}");
    assert!(text.contains("recovered: 7 masks"), "{text}");
    assert!(text.contains("source sha256 ok"), "{text}");

    // It catches a revived pruned weight: the masks against the unpruned source as
    // "recovered".
    let (ok, text) = run(&[&masks_path, &demo(), &demo()]);
    assert!(
        !ok && text.contains("nonzero values where the mask is 0"),
        "{text}"
    );
    // And a file that lost a key.
    let r = Weights::open(&out).unwrap();
    let short: Vec<OutTensor> = r
        .keys()
        .into_iter()
        .filter(|k| k != "global_step")
        .map(|k| {
            let (dtype, shape, bytes) = r.raw(&k).unwrap();
            raw_tensor(&k, dtype, shape, bytes.to_vec())
        })
        .collect();
    let short_path = masks_file(&dir, "short.safetensors", short);
    let (ok, text) = run(&[&masks_path, &demo(), &short_path]);
    assert!(!ok && text.contains("keys differ"), "{text}");
}
