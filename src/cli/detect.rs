//! `pruneview detect`: boxes for one scan, as text, JSON or a reference-style dump.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use pruneview::detect::sparse_backbone::{STAGE_NAMES, height_compression};
use pruneview::detect::{Detection, ForwardOutput};
use pruneview::io::{OutTensor, write_safetensors};
use pruneview::nn::Tensor;
use pruneview::pointcloud::Calib;

use super::{ModelArgs, ScanArgs};

#[derive(Args, Debug)]
pub struct DetectArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The scan to run on.
    #[arg(long, value_name = "S.bin")]
    pub scan: PathBuf,
    #[command(flatten)]
    pub scan_args: ScanArgs,
    /// Print JSON instead of text lines.
    #[arg(long)]
    pub json: bool,
    /// Write voxels, pillar features, raw head outputs (`raw.*`) and the final boxes
    /// (`pred_boxes`, `pred_scores`, `pred_labels`) to a safetensors file, with the same
    /// names and layouts as OpenPCDet reference dumps.
    #[arg(long, value_name = "OUT.safetensors")]
    pub dump: Option<PathBuf>,
}

pub fn detect(a: DetectArgs) -> Result<()> {
    let mut inputs = a.model.inputs();
    inputs.push(&a.scan);
    if let Some(path) = &a.dump {
        pruneview::session::export::check_outputs(&[path], &inputs)?;
    }
    let det = a.model.load()?;
    let scan = a.scan_args.prepare(&det, &a.scan)?;
    let out = det.forward(&scan.points)?;
    let dets = det.decode(&out.raw);
    if let Some(path) = &a.dump {
        dump(path, &out, &dets, &inputs)?;
    }
    let names = &det.config.class_names;
    let class = |d: &Detection| names.get(d.label - 1).map(String::as_str).unwrap_or("?");
    if a.json {
        let list: Vec<_> = dets
            .iter()
            .map(|d| {
                serde_json::json!({
                    "class": class(d), "label": d.label, "score": d.score,
                    "box": d.bbox, "velocity": d.velocity,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "scan": a.scan, "points": scan.len(), out.bev_sources().1: out.bev_sources().0,
            "frame": "lidar", "box_format": "[x, y, z, dx, dy, dz, heading], z at the box centre",
            "detections": list,
        });
        outln!("{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    match (&a.scan_args.fov_calib, a.scan_args.image_size) {
        (Some(calib_path), Some(image)) => {
            // KITTI result-file lines in the camera frame.
            let calib = Calib::load(calib_path)?;
            for d in &dets {
                let obj = calib.lidar_box_to_prediction(&d.bbox, class(d), d.score, image);
                outln!("{}", obj.to_kitti_line())?;
            }
        }
        _ => {
            outln!("# class x y z dx dy dz heading score (LiDAR frame, z at the box centre)")?;
            for d in &dets {
                let b = d.bbox;
                outln!(
                    "{} {:.4} {:.4} {:.4} {:.4} {:.4} {:.4} {:.4} {:.4}",
                    class(d),
                    b[0],
                    b[1],
                    b[2],
                    b[3],
                    b[4],
                    b[5],
                    b[6],
                    d.score
                )?;
            }
        }
    }
    let (sources, kind) = out.bev_sources();
    eprintln!(
        "{}: {} points, {sources} {kind}, {} boxes",
        a.scan.display(),
        scan.len(),
        dets.len()
    );
    if let Some(v) = out.voxels.as_ref().filter(|v| v.stats.over_max_voxels > 0) {
        eprintln!(
            "note: {} points would have opened a voxel past MAX_NUMBER_OF_VOXELS ({}) and were \
             dropped, as OpenPCDet does",
            v.stats.over_max_voxels,
            v.len()
        );
    }
    Ok(())
}

/// Writes a reference-style dump: same tensor names and layouts as OpenPCDet golden files.
fn dump(path: &Path, out: &ForwardOutput, dets: &[Detection], inputs: &[&Path]) -> Result<()> {
    let mut t = Vec::new();
    if let Some(v) = &out.voxels {
        let p = v.len();
        t.push(OutTensor::f32(
            "voxels",
            &[p, v.max_points, v.num_features],
            &v.voxels,
        ));
        let n: Vec<f32> = v.num_points.iter().map(|&x| x as f32).collect();
        t.push(OutTensor::f32("voxel_num_points", &[p], &n));
        let c: Vec<f32> = (0..p)
            .flat_map(|i| {
                let [z, y, x] = v.coord(i);
                [0.0, z as f32, y as f32, x as f32]
            })
            .collect();
        t.push(OutTensor::f32("voxel_coords", &[p, 4], &c));
    }
    match &out.sparse {
        None => {
            let pf = &out.pillars;
            t.push(OutTensor::f32(
                "pillar_features",
                &[pf.len(), pf.channels],
                &pf.features,
            ));
        }
        Some(sp) => {
            let p = out.voxels.as_ref().map_or(0, |v| v.len());
            let c = sp.voxel_features.len().checked_div(p).unwrap_or(0);
            t.push(OutTensor::f32(
                "voxel_features",
                &[p, c],
                &sp.voxel_features,
            ));
            // Rows sorted by (batch, z, y, x), the fixtures' canonical form.
            for (name, map) in STAGE_NAMES.iter().zip(&sp.backbone.stages) {
                let mut order: Vec<usize> = (0..map.sites.len()).collect();
                order.sort_by_key(|&i| map.sites.coords[i]);
                let idx: Vec<i64> = order
                    .iter()
                    .flat_map(|&i| {
                        let [z, y, x] = map.sites.coords[i];
                        [0, i64::from(z), i64::from(y), i64::from(x)]
                    })
                    .collect();
                let c = map.channels;
                let f: Vec<f32> = order
                    .iter()
                    .flat_map(|&i| map.features[i * c..(i + 1) * c].iter().copied())
                    .collect();
                t.push(OutTensor::i64(
                    format!("sparse.{name}.indices"),
                    &[order.len(), 4],
                    &idx,
                ));
                t.push(OutTensor::f32(
                    format!("sparse.{name}.features"),
                    &[order.len(), c],
                    &f,
                ));
            }
            if let Some(enc) = sp.backbone.encoded() {
                let (sub, shape) = sub8(&height_compression(enc));
                t.push(OutTensor::f32("spatial_features.sub8", &shape, &sub));
            }
        }
    }
    let (sub, shape) = sub8(&out.bev_features);
    t.push(OutTensor::f32("spatial_features_2d.sub8", &shape, &sub));
    for o in &out.raw.outputs {
        t.push(OutTensor::f32(
            format!("raw.{}", o.name),
            &o.tensor.shape,
            &o.tensor.data,
        ));
    }
    let dim = if dets.iter().any(|d| d.velocity.is_some()) {
        9
    } else {
        7
    };
    let boxes: Vec<f32> = dets
        .iter()
        .flat_map(|d| {
            let mut b = d.bbox.to_vec();
            if dim == 9 {
                b.extend(d.velocity.unwrap_or([0.0, 0.0]));
            }
            b
        })
        .collect();
    t.push(OutTensor::f32("pred_boxes", &[dets.len(), dim], &boxes));
    let scores: Vec<f32> = dets.iter().map(|d| d.score).collect();
    t.push(OutTensor::f32("pred_scores", &[dets.len()], &scores));
    let labels: Vec<i64> = dets.iter().map(|d| d.label as i64).collect();
    t.push(OutTensor::i64("pred_labels", &[dets.len()], &labels));
    let meta = HashMap::from([("producer".to_string(), "pruneview detect".to_string())]);
    write_safetensors(path, &t, Some(meta), inputs).with_context(|| "writing --dump")?;
    Ok(())
}

/// A `[C, H, W]` map subsampled `[:, ::8, ::8]` as the fixtures store it, shape `[1, C, h, w]`.
fn sub8(map: &Tensor) -> (Vec<f32>, [usize; 4]) {
    let (c, h, w) = (map.shape[0], map.shape[1], map.shape[2]);
    let (hs, ws) = (h.div_ceil(8), w.div_ceil(8));
    let mut sub = Vec::with_capacity(c * hs * ws);
    for ch in 0..c {
        for y in (0..h).step_by(8) {
            for x in (0..w).step_by(8) {
                sub.push(map.data[(ch * h + y) * w + x]);
            }
        }
    }
    (sub, [1, c, hs, ws])
}
