//! Dataset subcommands: `synth` (synthetic KITTI-layout scenes) and `eval` (run a model,
//! optionally masked, over a KITTI-layout folder and report KITTI AP).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use pruneview::eval::{self, EvalSet};
use pruneview::pointcloud::{Calib, ImageSize, Scan, kitti};
use pruneview::prune::export;

use super::progress::{cancel_flag, with_progress};
use super::{ModelArgs, parse_image_size};

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
    /// Keep only the points inside camera 2's field of view (what a FOV_POINTS_ONLY model
    /// sees; files about 7x smaller).
    #[arg(long)]
    pub fov_only: bool,
    /// Replace the scenes of a folder that already holds a dataset.
    #[arg(long)]
    pub overwrite: bool,
}

pub fn synth(a: SynthArgs) -> Result<()> {
    let cancel = cancel_flag();
    let t = std::time::Instant::now();
    let n = with_progress("synth", &cancel, |ctl| {
        pruneview::synth::synth_to_dir(&a.out, a.count, a.seed, a.overwrite, ctl)
    })?;
    if a.fov_only {
        for i in 0..n {
            let bin = a.out.join(format!("velodyne/{i:06}.bin"));
            let mut scan = Scan::load(&bin)?;
            let calib = Calib::load(a.out.join(format!("calib/{i:06}.txt")))?;
            kitti::fov_filter(&mut scan, &calib, pruneview::synth::IMAGE);
            scan.write_bin(&bin)?;
        }
    }
    eprintln!(
        "{}: {n} scenes in {:.1} s",
        a.out.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// OpenPCDet model YAML (optional when the weights carry `pruneview.config`).
    #[arg(long, value_name = "C.yaml")]
    pub config: Option<PathBuf>,
    /// The model to run on `--dataset`.
    #[arg(
        long,
        value_name = "W.safetensors",
        required_unless_present = "results"
    )]
    pub weights: Option<PathBuf>,
    /// Masks from `prune` or `export` (U8 or BOOL, 1 kept, 0 pruned, keyed by this model's
    /// weight names), applied to the weights before running; any other file is refused.
    #[arg(long, value_name = "M.safetensors")]
    pub masks: Option<PathBuf>,
    /// KITTI-layout folder: velodyne/, label_2/, calib/.
    #[arg(long, value_name = "DIR", required_unless_present = "results")]
    pub dataset: Option<PathBuf>,
    /// Evaluate KITTI result files instead of a model: one `<frame>.txt` per frame, label
    /// lines with a 16th field, the score (what OpenPCDet writes with `--save_to_file`); a
    /// missing file is a frame without detections. Needs `--labels`.
    #[arg(
        long,
        value_name = "DIR",
        requires = "labels",
        conflicts_with_all = ["weights", "config", "masks", "dataset"]
    )]
    pub results: Option<PathBuf>,
    /// Ground-truth `label_2` folder for `--results`.
    #[arg(long, value_name = "DIR", requires = "results")]
    pub labels: Option<PathBuf>,
    /// File with one frame id per line (e.g. ImageSets/val.txt); default: every label.
    #[arg(long, value_name = "FILE")]
    pub split: Option<PathBuf>,
    /// Classes to evaluate with `--results` (a model evaluates its own).
    #[arg(long, value_delimiter = ',', default_value = "Car,Pedestrian,Cyclist")]
    pub classes: Vec<String>,
    /// Print exactly the text of OpenPCDet's `get_official_eval_result` (AP@ and AP_R40@
    /// blocks, strict and loose overlaps, bbox / bev / 3d / aos lines).
    #[arg(long, conflicts_with = "json")]
    pub official: bool,
    /// Image size for the camera-FOV filter and 2D boxes.
    #[arg(long, value_name = "HxW", default_value = "375x1242", value_parser = parse_image_size)]
    pub image_size: ImageSize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A labelled KITTI-layout folder and which of its frames to use (`eval`, `report`).
#[derive(Args, Debug)]
pub struct DatasetArgs {
    /// KITTI-layout folder: velodyne/, label_2/, calib/.
    #[arg(long, value_name = "DIR")]
    pub dataset: PathBuf,
    /// File with one frame id per line (e.g. ImageSets/val.txt); default: every label.
    #[arg(long, value_name = "FILE")]
    pub split: Option<PathBuf>,
}

impl DatasetArgs {
    /// The frame ids of the split file, or every label of the dataset.
    pub fn frame_ids(&self) -> Result<Vec<String>> {
        frame_list(&self.dataset, self.split.as_deref())
    }
}

fn frame_list(dataset: &Path, split: Option<&Path>) -> Result<Vec<String>> {
    match split {
        Some(f) => read_split(f),
        None => Ok(eval::frame_ids(dataset.join("label_2"))?),
    }
}

/// The frame ids of a split file, one per line.
fn read_split(f: &Path) -> Result<Vec<String>> {
    Ok(
        pruneview::io::read_text_limited(f, pruneview::io::MAX_CONFIG_BYTES)
            .with_context(|| format!("{}: cannot read the split", f.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

pub fn eval_cmd(a: EvalArgs) -> Result<()> {
    let (gt, dt, classes) = match (&a.results, &a.labels, &a.weights, &a.dataset) {
        (Some(results), Some(labels), _, _) => {
            let classes: Vec<eval::KittiClass> = a
                .classes
                .iter()
                .map(|c| c.parse())
                .collect::<Result<_, _>>()?;
            let ids = match &a.split {
                Some(f) => read_split(f)?,
                None => eval::frame_ids(labels)?,
            };
            let (gt, dt) = eval::load_frames(labels, results, &ids)?;
            (gt, dt, classes)
        }
        (_, _, Some(weights), Some(dataset)) => {
            let cancel = cancel_flag();
            let model = ModelArgs {
                config: a.config.clone(),
                weights: weights.clone(),
            };
            let mut det = model.load()?;
            if let Some(m) = &a.masks {
                let masks = export::read_masks(m, &det)?;
                let n = export::apply_masks(&mut det, &masks)?;
                eprintln!("{}: {n} layers masked", m.display());
            }
            let classes = eval::model_classes(&det)?;
            let ids = frame_list(dataset, a.split.as_deref())?;
            let (set, dt) = with_progress("eval", &cancel, |ctl| {
                let set = EvalSet::load(
                    dataset,
                    &ids,
                    a.image_size,
                    &det.config.data.used_features,
                    ctl,
                )?;
                let dt = set.detections(&det, ctl)?;
                Ok::<_, eval::DatasetError>((set, dt))
            })?;
            let gt = set.frames.into_iter().map(|f| f.labels).collect();
            (gt, dt, classes)
        }
        _ => anyhow::bail!("give --weights and --dataset, or --results and --labels"),
    };
    if a.official {
        let text = eval::official_result(&gt, &dt, &classes)?;
        outln!("{}", text.trim_end_matches('\n'))?;
        return Ok(());
    }
    let report = eval::evaluate(&gt, &dt, &classes)?;
    if a.json {
        outln!("{}", report.to_json())?;
    } else {
        outln!("{}", report.to_table())?;
    }
    Ok(())
}
