//! Dataset subcommands: `synth` (synthetic KITTI-layout scenes) and `eval` (run a model,
//! optionally masked, over a KITTI-layout folder and report KITTI AP).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use pruneview::detect::{Detector, FovFilter, prepare_scan};
use pruneview::eval::{self, KittiClass};
use pruneview::model::Weights;
use pruneview::nn::Tensor;
use pruneview::pointcloud::kitti::load_labels;
use pruneview::pointcloud::{Calib, ImageSize};

use super::ModelArgs;
use super::prune::{bar, cancel_flag};

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output folder (KITTI layout: velodyne/, label_2/, calib/).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of scenes.
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    /// Scenes are a pure function of (seed, index).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn synth(a: SynthArgs) -> Result<()> {
    let cancel = cancel_flag();
    let pb = bar("synth");
    let progress = |done: usize, total: usize| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    };
    let t = std::time::Instant::now();
    let n = pruneview::synth::synth_to_dir(&a.out, a.count, a.seed, &progress, &cancel)?;
    pb.finish_and_clear();
    eprintln!(
        "{}: {n} scenes in {:.1} s",
        a.out.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// U8 masks from `export` (1 kept, 0 pruned), applied to the weights before running.
    #[arg(long, value_name = "M.safetensors")]
    pub masks: Option<PathBuf>,
    /// KITTI-layout folder: velodyne/, label_2/, calib/.
    #[arg(long, value_name = "DIR")]
    pub dataset: PathBuf,
    /// File with one frame id per line (e.g. ImageSets/val.txt); default: every label.
    #[arg(long, value_name = "FILE")]
    pub split: Option<PathBuf>,
    /// Image size for the camera-FOV filter and 2D boxes.
    #[arg(long, value_name = "HxW", default_value = "375x1242", value_parser = parse_size)]
    pub image_size: ImageSize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_size(s: &str) -> Result<ImageSize, String> {
    s.parse::<ImageSize>().map_err(|e| e.to_string())
}

/// Multiplies every masked weight by its mask (so a pruned model runs through the same
/// engine).
pub fn apply_masks(det: &mut Detector, path: &Path) -> Result<usize> {
    let masks = Weights::open(path)?;
    let mut applied = 0;
    for unit in det.units_mut() {
        let name = unit.weight_name();
        let Some((_, shape, bytes)) = masks.raw(&name) else {
            continue;
        };
        if shape != unit.weight.shape.as_slice() {
            bail!(
                "{}: mask `{name}` has shape {shape:?}, the weight {:?}",
                path.display(),
                unit.weight.shape
            );
        }
        let data: Vec<f32> = unit
            .weight
            .data
            .iter()
            .zip(bytes)
            .map(|(w, &m)| if m == 0 { 0.0 } else { *w })
            .collect();
        unit.set_weight(Tensor::from_vec(&unit.weight.shape.clone(), data))?;
        applied += 1;
    }
    if applied == 0 {
        bail!("{}: no mask matches a weight of this model", path.display());
    }
    Ok(applied)
}

fn frame_list(a: &EvalArgs) -> Result<Vec<String>> {
    match &a.split {
        Some(f) => Ok(std::fs::read_to_string(f)
            .with_context(|| format!("{}: cannot read the split", f.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()),
        None => Ok(eval::frame_ids(a.dataset.join("label_2"))?),
    }
}

pub fn eval_cmd(a: EvalArgs) -> Result<()> {
    let cancel = cancel_flag();
    let mut det = a.model.load()?;
    if let Some(m) = &a.masks {
        let n = apply_masks(&mut det, m)?;
        eprintln!("{}: {n} layers masked", m.display());
    }
    let classes: Vec<KittiClass> = det
        .config
        .class_names
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    if classes.is_empty() {
        bail!(
            "none of the model's classes ({}) is a KITTI class",
            det.config.class_names.join(", ")
        );
    }
    let ids = frame_list(&a)?;
    if ids.is_empty() {
        bail!("{}: no frames to evaluate", a.dataset.display());
    }
    let pb = bar("eval");
    pb.set_length(ids.len() as u64);
    let (mut gt, mut dt) = (Vec::new(), Vec::new());
    for id in &ids {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            bail!("cancelled");
        }
        let calib_path = a.dataset.join(format!("calib/{id}.txt"));
        let fov = FovFilter {
            calib: calib_path.clone(),
            image: a.image_size,
        };
        let scan = prepare_scan(
            &a.dataset.join(format!("velodyne/{id}.bin")),
            None,
            Some(&fov),
            &det.config.data.used_features,
        )?;
        let calib = Calib::load(&calib_path)?;
        let names = &det.config.class_names;
        let objects = det
            .detect(&scan.points)?
            .iter()
            .map(|d| {
                let class = names.get(d.label - 1).map_or("?", String::as_str);
                calib.lidar_box_to_prediction(&d.bbox, class, d.score, a.image_size)
            })
            .collect();
        dt.push(objects);
        gt.push(load_labels(a.dataset.join(format!("label_2/{id}.txt")))?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let report = eval::evaluate(&gt, &dt, &classes)?;
    if a.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.to_table());
    }
    Ok(())
}
