//! The engine against OpenPCDet's own outputs (`../shared/reference`), at the tolerances in
//! that folder's README: voxels exact; pillar features, BEV features and raw head outputs
//! max abs error <= 1e-3 and max abs / max magnitude <= 1e-4; every reference box matched by
//! a box of the same label with rotated BEV IoU >= 0.99 and score within 1e-4.

use std::path::PathBuf;
use std::sync::OnceLock;

use pruneview::boxes::iou::{BevBox, bev_iou};
use pruneview::detect::{Detection, Detector, ForwardOutput};
use pruneview::model::Weights;
use pruneview::pointcloud::Scan;

fn reference() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference")
}

struct Case {
    golden: Weights,
    out: ForwardOutput,
    dets: Vec<Detection>,
}

fn run_case(folder: &str, config: &str, cols: usize) -> Case {
    let root = reference();
    let dir = root.join(folder);
    let det = Detector::load(Some(&root.join(config)), &dir.join("weights.safetensors"))
        .expect("load detector");
    assert!(
        det.unused_keys.is_empty(),
        "unused keys: {:?}",
        det.unused_keys
    );
    let bytes = std::fs::read(dir.join("points_in.bin")).expect("points_in.bin");
    let points: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(points.len() % cols, 0);
    let out = det.forward(&points).expect("forward");
    let dets = det.decode(&out.raw);
    Case {
        golden: Weights::open(&dir.join("golden.safetensors")).expect("golden"),
        out,
        dets,
    }
}

fn pointpillars() -> &'static Case {
    static C: OnceLock<Case> = OnceLock::new();
    C.get_or_init(|| {
        run_case(
            "pointpillar_kitti_000008",
            "cfgs/kitti_models/pointpillar.yaml",
            4,
        )
    })
}

fn centerpoint() -> &'static Case {
    static C: OnceLock<Case> = OnceLock::new();
    C.get_or_init(|| {
        run_case(
            "centerpoint_pp_nuscenes",
            "cfgs/nuscenes_models/cbgs_dyn_pp_centerpoint.yaml",
            5,
        )
    })
}

fn assert_close(name: &str, ours: &[f32], shape: &[usize], golden: &Weights) {
    let g = golden.tensor_any_shape(name).expect(name);
    assert_eq!(g.shape, shape, "{name}: shape");
    let max_mag = g.data.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max_err = ours
        .iter()
        .zip(&g.data)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        max_err <= 1e-3 && max_err <= 1e-4 * max_mag,
        "{name}: max abs error {max_err:e}, max magnitude {max_mag:e}, relative {:e}",
        max_err / max_mag
    );
}

fn golden_i64(golden: &Weights, key: &str) -> Vec<i64> {
    let (_, _, bytes) = golden.raw(key).expect(key);
    bytes
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn golden_labels(golden: &Weights) -> Vec<i64> {
    golden_i64(golden, "pred_labels")
}

fn bev(b: &[f32]) -> BevBox {
    BevBox::new(b[0], b[1], b[3], b[4], b[6])
}

/// Every reference box must be matched by one of ours (same label, score within 1e-4,
/// rotated BEV IoU >= 0.99) and vice versa.
///
/// Exception, as the reference README allows: exact score ties. With random weights every
/// empty BEV cell yields bit-identical logits, so hundreds of candidates share one score
/// and OpenPCDet keeps whichever of them PyTorch's tie order visits first. Decoding and the
/// tie order themselves are reproduced exactly (see
/// `decoding_reference_raw_outputs_gives_reference_boxes`), but our convolutions sum in a
/// different order, so a tie group can gain or lose a member by one ulp and NMS then keeps
/// other members of it: same score, size and heading, a different position. Such a kept
/// box can in turn suppress (or stop suppressing) an overlapping neighbour. So a box
/// without an exact counterpart is accepted only if it is
/// - a member of an exact tie (another box of the same side has the same score) and the
///   other side kept a box of the same tie group, or
/// - explained by NMS: it overlaps (IoU > NMS_THRESH) a box of the other side that has no
///   exact counterpart and a score at least as high.
///
/// Anything else fails, and the counts may differ only by such boxes.
fn assert_boxes_match(golden: &Weights, ours: &[Detection], cols: usize, nms_thresh: f32) {
    let g_boxes = golden.tensor_any_shape("pred_boxes").unwrap();
    let g_scores = golden.tensor_any_shape("pred_scores").unwrap();
    let g_labels = golden_labels(golden);
    assert_eq!(g_boxes.shape[1], cols);
    let refs: Vec<Detection> = (0..g_labels.len())
        .map(|i| {
            let g = &g_boxes.data[i * cols..(i + 1) * cols];
            Detection {
                bbox: g[..7].try_into().unwrap(),
                velocity: (cols == 9).then(|| [g[7], g[8]]),
                score: g_scores.data[i],
                label: g_labels[i] as usize,
            }
        })
        .collect();
    let same = |a: &Detection, b: &Detection| {
        a.label == b.label
            && (a.score - b.score).abs() <= 1e-4
            && bev_iou(&bev(&a.bbox), &bev(&b.bbox)) >= 0.99
    };
    // Greedy one-to-one exact matching.
    let mut ref_match = vec![None; refs.len()];
    let mut our_used = vec![false; ours.len()];
    for (i, r) in refs.iter().enumerate() {
        if let Some(j) = (0..ours.len()).find(|&j| !our_used[j] && same(r, &ours[j])) {
            our_used[j] = true;
            ref_match[i] = Some(j);
            let d = &ours[j];
            assert!(
                (d.bbox[2] - r.bbox[2]).abs() < 1e-3,
                "box {i}: z {} vs {}",
                d.bbox[2],
                r.bbox[2]
            );
            if let (Some(v), Some(rv)) = (d.velocity, r.velocity) {
                assert!(
                    (v[0] - rv[0]).abs() < 1e-3 && (v[1] - rv[1]).abs() < 1e-3,
                    "box {i}: velocity"
                );
            }
        }
    }
    let ref_unmatched: Vec<&Detection> = (0..refs.len())
        .filter(|&i| ref_match[i].is_none())
        .map(|i| &refs[i])
        .collect();
    let our_unmatched: Vec<&Detection> = (0..ours.len())
        .filter(|&j| !our_used[j])
        .map(|j| &ours[j])
        .collect();
    let explained = |b: &Detection, side: &[Detection], other_unmatched: &[&Detection]| {
        let tied = side.iter().filter(|o| o.score == b.score).count() > 1;
        let same_group = other_unmatched.iter().any(|o| {
            o.label == b.label
                && (o.score - b.score).abs() <= 1e-4
                && (3..7).all(|c| (o.bbox[c] - b.bbox[c]).abs() < 1e-3)
        });
        let suppressed = other_unmatched.iter().any(|o| {
            o.score >= b.score - 1e-4 && bev_iou(&bev(&o.bbox), &bev(&b.bbox)) > nms_thresh
        });
        (tied && same_group) || suppressed
    };
    for b in &ref_unmatched {
        assert!(
            explained(b, &refs, &our_unmatched),
            "reference box {b:?} has no match and no tie or NMS explanation"
        );
    }
    for b in &our_unmatched {
        assert!(
            explained(b, ours, &ref_unmatched),
            "our box {b:?} has no reference match and no tie or NMS explanation"
        );
    }
    eprintln!(
        "{} of {} reference boxes matched exactly; {} reference and {} of our {} boxes differ by exact-tie order",
        refs.len() - ref_unmatched.len(),
        refs.len(),
        ref_unmatched.len(),
        our_unmatched.len(),
        ours.len()
    );
}

fn bev_sub8(out: &ForwardOutput) -> (Vec<f32>, Vec<usize>) {
    sub8(&out.bev_features)
}

/// A `[C, H, W]` map subsampled `[:, ::8, ::8]`, with its `[1, C, H/8, W/8]` shape.
fn sub8(b: &pruneview::nn::Tensor) -> (Vec<f32>, Vec<usize>) {
    let (c, h, w) = (b.shape[0], b.shape[1], b.shape[2]);
    let mut v = Vec::new();
    for ch in 0..c {
        for y in (0..h).step_by(8) {
            for x in (0..w).step_by(8) {
                v.push(b.data[(ch * h + y) * w + x]);
            }
        }
    }
    (v, vec![1, c, h.div_ceil(8), w.div_ceil(8)])
}

#[test]
fn pointpillars_voxels_are_exact() {
    let case = pointpillars();
    let v = case.out.voxels.as_ref().expect("static voxels");
    let g = &case.golden;
    let gv = g.tensor_any_shape("voxels").unwrap();
    assert_eq!(gv.shape, [v.len(), v.max_points, v.num_features]);
    assert!(gv.data == v.voxels, "voxels differ");
    let gn = g.tensor_any_shape("voxel_num_points").unwrap();
    assert!(
        gn.data
            .iter()
            .zip(&v.num_points)
            .all(|(a, &b)| *a == b as f32)
    );
    let gc = g.tensor_any_shape("voxel_coords").unwrap();
    for i in 0..v.len() {
        let [z, y, x] = v.coord(i);
        assert_eq!(
            &gc.data[4 * i..4 * i + 4],
            &[0.0, z as f32, y as f32, x as f32],
            "coord {i}"
        );
    }
}

#[test]
fn pointpillars_features_and_raw_outputs_match() {
    let case = pointpillars();
    let p = &case.out.pillars;
    assert_close(
        "pillar_features",
        &p.features,
        &[p.len(), p.channels],
        &case.golden,
    );
    let (sub, shape) = bev_sub8(&case.out);
    assert_close("spatial_features_2d.sub8", &sub, &shape, &case.golden);
    for name in ["cls_preds", "box_preds", "dir_cls_preds"] {
        let t = case.out.raw.get(name).expect(name);
        assert_close(&format!("raw.{name}"), &t.data, &t.shape, &case.golden);
    }
}

#[test]
fn pointpillars_boxes_match() {
    let case = pointpillars();
    assert_boxes_match(&case.golden, &case.dets, 7, 0.01);
}

#[test]
fn centerpoint_features_and_raw_outputs_match() {
    let case = centerpoint();
    let p = &case.out.pillars;
    assert_eq!(p.len(), 8945);
    assert_close(
        "pillar_features",
        &p.features,
        &[p.len(), p.channels],
        &case.golden,
    );
    let (sub, shape) = bev_sub8(&case.out);
    assert_close("spatial_features_2d.sub8", &sub, &shape, &case.golden);
    assert_eq!(case.out.raw.outputs.len(), 36);
    for o in &case.out.raw.outputs {
        let t = &o.tensor;
        assert_close(&format!("raw.{}", o.name), &t.data, &t.shape, &case.golden);
    }
}

#[test]
fn centerpoint_boxes_match() {
    let case = centerpoint();
    assert_boxes_match(&case.golden, &case.dets, 9, 0.2);
}

#[test]
fn kitti_scan_through_fov_filter_equals_reference_input() {
    // The whole input path: KITTI .bin -> camera-FOV filter -> model features.
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/kitti/training");
    let fov = pruneview::detect::FovFilter {
        calib: data.join("calib/000008.txt"),
        image: "375x1242".parse().unwrap(),
    };
    let used: Vec<String> = ["x", "y", "z", "intensity"].map(String::from).to_vec();
    let prepared =
        pruneview::detect::prepare_scan(&data.join("velodyne/000008.bin"), None, Some(&fov), &used)
            .unwrap();
    let reference = Scan::load_as(
        reference().join("pointpillar_kitti_000008/points_in.bin"),
        pruneview::pointcloud::ScanFormat::Kitti,
    )
    .unwrap();
    assert_eq!(prepared.len(), 17_221);
    assert!(
        prepared.points == reference.points(),
        "FOV-filtered points differ"
    );
}

/// Decoding alone, on OpenPCDet's own raw outputs, must give OpenPCDet's boxes exactly:
/// same count, same order, same labels and scores (PyTorch's sigmoid and tie order are
/// reproduced, see `detect::torch_order`).
#[test]
fn decoding_reference_raw_outputs_gives_reference_boxes() {
    let root = reference();
    for (folder, config, cols) in [
        (
            "pointpillar_kitti_000008",
            "cfgs/kitti_models/pointpillar.yaml",
            7usize,
        ),
        (
            "centerpoint_pp_nuscenes",
            "cfgs/nuscenes_models/cbgs_dyn_pp_centerpoint.yaml",
            9,
        ),
        ("second_kitti_000008", "cfgs/kitti_models/second.yaml", 7),
    ] {
        let dir = root.join(folder);
        let det =
            Detector::load(Some(&root.join(config)), &dir.join("weights.safetensors")).unwrap();
        let golden = Weights::open(&dir.join("golden.safetensors")).unwrap();
        let mut raw = pruneview::detect::RawOutputs::default();
        for k in golden.keys() {
            if let Some(name) = k.strip_prefix("raw.") {
                raw.outputs.push(pruneview::detect::RawOutput {
                    name: name.to_string(),
                    kind: det.head.output_kind(name).expect("an output of this head"),
                    tensor: golden.tensor_any_shape(&k).unwrap(),
                });
            }
        }
        let dets = det.decode(&raw);
        let g_boxes = golden.tensor_any_shape("pred_boxes").unwrap();
        let g_scores = golden.tensor_any_shape("pred_scores").unwrap();
        let g_labels = golden_labels(&golden);
        assert_eq!(dets.len(), g_labels.len(), "{folder}: box count");
        for (i, d) in dets.iter().enumerate() {
            let g = &g_boxes.data[i * cols..(i + 1) * cols];
            assert_eq!(d.label as i64, g_labels[i], "{folder} box {i}: label");
            assert_eq!(d.score, g_scores.data[i], "{folder} box {i}: score");
            for c in 0..7 {
                assert!(
                    (d.bbox[c] - g[c]).abs() <= 1e-4 * g[c].abs().max(1.0),
                    "{folder} box {i}: {:?} vs {g:?}",
                    d.bbox
                );
            }
            if cols == 9 {
                let v = d.velocity.unwrap();
                assert_eq!([v[0], v[1]], [g[7], g[8]], "{folder} box {i}: velocity");
            }
        }
    }
}

fn second() -> &'static Case {
    static C: OnceLock<Case> = OnceLock::new();
    C.get_or_init(|| run_case("second_kitti_000008", "cfgs/kitti_models/second.yaml", 4))
}

/// The stage outputs of a voxel model's forward pass.
fn sparse_stages(case: &Case) -> &[pruneview::detect::sparse_backbone::SparseMap] {
    &case
        .out
        .sparse
        .as_ref()
        .expect("a voxel model")
        .backbone
        .stages
}

/// Rows of a sparse map in `(z, y, x)` order, the fixtures' canonical order.
fn sorted_rows(map: &pruneview::detect::sparse_backbone::SparseMap) -> Vec<usize> {
    let mut order: Vec<usize> = (0..map.sites.len()).collect();
    order.sort_by_key(|&i| map.sites.coords[i]);
    order
}

fn centerpoint_voxel() -> &'static Case {
    static C: OnceLock<Case> = OnceLock::new();
    C.get_or_init(|| {
        run_case(
            "centerpoint_voxel_nuscenes",
            "cfgs/nuscenes_models/cbgs_voxel01_res3d_centerpoint.yaml",
            5,
        )
    })
}

/// Against OpenPCDet + spconv 2.3.8: voxels exactly, MeanVFE's features, and the active
/// sites after every stage exactly (spconv's submanifold and strided output-site rules,
/// the (0, 1, 1) padding of conv4 and conv_out's (3, 1, 1) / (2, 1, 1) included).
fn assert_voxels_and_sites_match(case: &Case) {
    use pruneview::detect::sparse_backbone::STAGE_NAMES;
    let golden = &case.golden;
    let v = case.out.voxels.as_ref().expect("voxels");
    let gv = golden.tensor_any_shape("voxels").unwrap();
    assert_eq!(gv.shape, [v.len(), v.max_points, v.num_features]);
    assert!(gv.data == v.voxels, "voxels differ");
    let coords: Vec<i64> = v.coords.iter().map(|&c| c as i64).collect();
    assert!(
        golden_i64(golden, "voxel_coords") == coords,
        "voxel coords differ"
    );
    let features = &case.out.sparse.as_ref().unwrap().voxel_features;
    assert_close(
        "voxel_features",
        features,
        &[v.len(), v.num_features],
        golden,
    );
    let stages = sparse_stages(case);
    assert_eq!(stages.len(), STAGE_NAMES.len());
    for (name, map) in STAGE_NAMES.iter().zip(stages) {
        let gi = golden_i64(golden, &format!("sparse.{name}.indices"));
        let ours: Vec<i64> = sorted_rows(map)
            .iter()
            .flat_map(|&i| {
                let [z, y, x] = map.sites.coords[i];
                [0, z as i64, y as i64, x as i64]
            })
            .collect();
        assert!(
            gi == ours,
            "{name}: indices differ ({} vs {} sites)",
            gi.len() / 4,
            map.sites.len()
        );
    }
}

#[test]
fn second_voxels_features_and_sparse_sites_match_spconv() {
    assert_voxels_and_sites_match(second());
}

#[test]
fn centerpoint_voxel_voxels_features_and_sparse_sites_match_spconv() {
    assert_voxels_and_sites_match(centerpoint_voxel());
}

/// The sparse features after every stage against the fixtures.
///
/// Blocked by the fixtures: spconv 2.3.8's CPU kernels are not deterministic with more than
/// one thread. Run here on a fixture's own voxel features and weights
/// (`tests/python/check_sparse_spconv.py`), spconv with one thread gives our features at
/// every stage of both models (no site off by more than 1e-3), run after run; with two
/// threads, thousands of rows change from run to run. The fixtures (made on a larger
/// machine) differ from the one-thread result already at `x_conv1` (SECOND 579 of 13,081
/// sites, up to 2.7; CenterPoint-voxel 629 of 15,307), and spconv fed the SECOND fixture's
/// own `x_conv1` gives an `x_conv2` that differs from the fixture's on 1,924 of 20,294
/// sites: each stage carries its own race. They need regenerating with
/// `torch.set_num_threads(1)`.
#[test]
#[ignore = "the fixtures' sparse features carry spconv CPU races; see the doc comment"]
fn voxel_models_sparse_features_match_spconv() {
    use pruneview::detect::sparse_backbone::STAGE_NAMES;
    for case in [second(), centerpoint_voxel()] {
        for (name, map) in STAGE_NAMES.iter().zip(sparse_stages(case)) {
            let c = map.channels;
            let sorted: Vec<f32> = sorted_rows(map)
                .iter()
                .flat_map(|&i| map.features[i * c..(i + 1) * c].iter().copied())
                .collect();
            assert_close(
                &format!("sparse.{name}.features"),
                &sorted,
                &[map.sites.len(), c],
                &case.golden,
            );
        }
    }
}

/// Everything of a voxel model after the 3-D backbone, fed the fixture's own `encoded` tensor
/// (so the sparse stages' races above do not enter): HeightCompression's map, the 2-D
/// backbone, the head's raw outputs, and every box.
///
/// PyTorch in float32 on the same input gives the fixtures' `spatial_features_2d` bit for
/// bit, but their class scores only with unrounded score biases: the fixtures shifted those
/// biases in float32 and stored them rounded to float16. So a score tensor (`cls_preds`,
/// `headN.hm`) must be ours plus one constant per channel (within the README's tolerance),
/// that constant within half a float16 step of the stored bias; the boxes are then decoded
/// with the fixture's biases and must all match.
fn voxel_model_matches_from_encoded(folder: &str, config: &str, cols: usize, nms: f32) {
    use pruneview::detect::sparse_backbone::{SparseMap, height_compression};
    use pruneview::nn::sparse::Sites;
    let root = reference();
    let dir = root.join(folder);
    let weights = dir.join("weights.safetensors");
    let det = Detector::load(Some(&root.join(config)), &weights).unwrap();
    let golden = Weights::open(&dir.join("golden.safetensors")).unwrap();
    let idx = golden_i64(&golden, "sparse.encoded.indices");
    let feats = golden.tensor_any_shape("sparse.encoded.features").unwrap();
    let coords = idx
        .chunks_exact(4)
        .map(|r| [r[1] as u32, r[2] as u32, r[3] as u32])
        .collect();
    let pruneview::detect::Encoder::Voxels { encoded_shape, .. } = &det.encoder else {
        panic!("{folder}: a voxel model");
    };
    let encoded = SparseMap {
        sites: Sites::new(*encoded_shape, coords).unwrap(),
        channels: feats.shape[1],
        features: feats.data,
    };
    let spatial = height_compression(&encoded);
    let (sub, shape) = sub8(&spatial);
    assert_close("spatial_features.sub8", &sub, &shape, &golden);
    let bev = det.backbone.forward(spatial).unwrap();
    let (sub, shape) = sub8(&bev);
    assert_close("spatial_features_2d.sub8", &sub, &shape, &golden);
    let mut raw = det.head.forward(&bev).unwrap();
    let w = Weights::open(&weights).unwrap();
    for o in raw.outputs.iter_mut() {
        let (name, ours) = (o.name.as_str(), &mut o.tensor);
        let key = format!("raw.{name}");
        let bias_key = if name == "cls_preds" {
            "dense_head.conv_cls.bias".to_string()
        } else if let Some(h) = name
            .strip_suffix(".hm")
            .and_then(|h| h.strip_prefix("head"))
        {
            format!("dense_head.heads_list.{h}.hm.1.bias")
        } else {
            assert_close(&key, &ours.data, &ours.shape, &golden);
            continue;
        };
        let bias = w.tensor_any_shape(&bias_key).unwrap().data;
        let g = golden.tensor_any_shape(&key).unwrap();
        assert_eq!(ours.shape, g.shape, "{key}: shape");
        // cls_preds is [1, H, W, C]; a CenterPoint heatmap [1, C, H, W].
        let c = bias.len();
        let plane = g.data.len() / c;
        let channel_of = |i: usize| {
            if name == "cls_preds" {
                i % c
            } else {
                i / plane
            }
        };
        let max_mag = g.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        let tolerance = 1e-3f32.min(1e-4 * max_mag);
        let mut sums = vec![0f64; c];
        for (i, (a, b)) in g.data.iter().zip(&ours.data).enumerate() {
            sums[channel_of(i)] += f64::from(a - b);
        }
        let offsets: Vec<f32> = sums.iter().map(|s| (s / plane as f64) as f32).collect();
        for (ch, (&b, &offset)) in bias.iter().zip(&offsets).enumerate() {
            let half_step = 2f32.powi(b.abs().log2().floor() as i32 - 11);
            assert!(
                offset.abs() <= half_step * 1.01,
                "{key} channel {ch}: offset {offset:e}, more than half a float16 step \
                 ({half_step:e}) of the bias {b}"
            );
        }
        let spread = g
            .data
            .iter()
            .zip(&ours.data)
            .enumerate()
            .fold(0f32, |m, (i, (a, b))| {
                m.max((a - b - offsets[channel_of(i)]).abs())
            });
        assert!(
            spread <= tolerance,
            "{key}: {spread:e} beyond the per-channel offsets"
        );
        for (i, v) in ours.data.iter_mut().enumerate() {
            *v += offsets[channel_of(i)];
        }
    }
    assert_boxes_match(&golden, &det.decode(&raw), cols, nms);
}

#[test]
fn second_bev_head_and_boxes_match_openpcdet_from_the_encoded_tensor() {
    voxel_model_matches_from_encoded(
        "second_kitti_000008",
        "cfgs/kitti_models/second.yaml",
        7,
        0.01,
    );
}

#[test]
fn centerpoint_voxel_bev_head_and_boxes_match_openpcdet_from_the_encoded_tensor() {
    voxel_model_matches_from_encoded(
        "centerpoint_voxel_nuscenes",
        "cfgs/nuscenes_models/cbgs_voxel01_res3d_centerpoint.yaml",
        9,
        0.2,
    );
}
