//! The model work the app runs in background jobs: each function takes what it needs by value
//! or `Arc`, reports progress through a [`JobCtl`] and returns a value. None of it touches
//! egui, so the same calls run in tests and in `pruneview screenshots`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::detect::input::{FovFilter, prepare_scan};
use crate::detect::{Detection, Detector};
use crate::eval::{EvalSet, model_classes};
use crate::io::write_atomic;
use crate::model::Weights;
use crate::pointcloud::kitti::{self, Calib, ImageSize};
use crate::pointcloud::scan::list_scans;
use crate::prune::alloc::{Constraint, Frontier, Method, Prepared, Problem, Solution};
use crate::prune::curves::{Curves, Measured, ModelInfo};
use crate::prune::export::{self, Orders};
use crate::prune::measure::{DenseReference, Measurer, pruned_detector};
use crate::prune::probe::{self, CalibScan, CurveSettings, Predicted, ProbeError, PrunableLayer};
use crate::prune::{Allocation, Budget, BudgetKind, Lambdas, Weighting};
use crate::report::Accuracy;

use super::jobs::{JobCtl, JobResult};

/// KITTI's usual image_2 size, for the camera-FOV filter of scans in KITTI layout.
pub const KITTI_IMAGE: ImageSize = ImageSize { h: 375, w: 1242 };

/// Bins of the DP frontier (the slider's resolution is 1 / bins of the budget).
pub const FRONTIER_BINS: usize = 2048;

/// The baselines the app compares with, in display order.
pub const BASELINES: [Method; 4] = [Method::Uniform, Method::Global, Method::Lamp, Method::Erk];

fn cancelled<T>() -> JobResult<T> {
    Err("cancelled".into())
}

fn probe_err(e: ProbeError) -> String {
    match e {
        ProbeError::Cancelled => "cancelled".into(),
        e => e.to_string(),
    }
}

// ----------------------------------------------------------------------------------------
// model

/// What to open: a model (weights, optionally a YAML config) and calibration scans.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpenRequest {
    pub config: Option<PathBuf>,
    pub weights: PathBuf,
    pub scans: Vec<PathBuf>,
}

/// A loaded model and what the panels show about it (cheap to clone: shared handles).
#[derive(Clone)]
pub struct LoadedModel {
    pub det: Arc<Detector>,
    pub weights: Arc<Weights>,
    pub config_path: Option<PathBuf>,
    pub weights_path: PathBuf,
    pub info: ModelInfo,
    /// Parameters of the whole model (prunable or not).
    pub total_params: usize,
    /// FLOPs at the calibration scans' mean size (an empty scan before any is loaded).
    pub layers: Vec<PrunableLayer>,
}

impl LoadedModel {
    pub fn architecture(&self) -> String {
        let c = &self.det.config;
        let head = match c.head {
            crate::model::config::HeadConfig::Anchor(_) => "anchor head",
            crate::model::config::HeadConfig::Center(_) => "CenterPoint head",
        };
        format!("{} ({:?} VFE, {head})", c.model_name, c.vfe.kind)
    }

    pub fn classes(&self) -> String {
        self.det.config.class_names.join(", ")
    }
}

pub fn load_model(
    config: Option<PathBuf>,
    weights_path: PathBuf,
    ctl: &JobCtl,
) -> JobResult<LoadedModel> {
    ctl.step(0, 3, "reading the weights");
    let det = Detector::load(config.as_deref(), &weights_path).map_err(|e| e.to_string())?;
    if ctl.is_cancelled() {
        return cancelled();
    }
    ctl.step(1, 3, "mapping the tensors");
    let weights = Weights::open(&weights_path).map_err(|e| e.to_string())?;
    // Learned values only: BatchNorm's running statistics are buffers, not parameters.
    let total_params = weights
        .keys()
        .iter()
        .filter(|k| !k.contains("running_") && !k.ends_with("num_batches_tracked"))
        .filter_map(|k| weights.shape(k))
        .map(|s| s.iter().product::<usize>())
        .sum();
    ctl.step(2, 3, "sha256 of the weights");
    let sha = export::sha256_file(&weights_path).map_err(|e| e.to_string())?;
    let layers = probe::layer_table(&det, 0.0);
    ctl.step(3, 3, "done");
    Ok(LoadedModel {
        info: ModelInfo {
            name: det.config.model_name.clone(),
            weights_sha256: sha,
        },
        det: Arc::new(det),
        weights: Arc::new(weights),
        config_path: config,
        weights_path,
        total_params,
        layers,
    })
}

// ----------------------------------------------------------------------------------------
// scans

/// A labelled ground-truth box in the LiDAR frame.
#[derive(Clone, Debug, PartialEq)]
pub struct GtBox {
    pub class: String,
    pub bbox: kitti::LidarBox,
}

/// A calibration scan: the model's input, its size, the ground truth when a KITTI label
/// exists, and the dense model's detections (computed once, when the scan is added).
#[derive(Clone, Debug)]
pub struct ScanEntry {
    pub path: PathBuf,
    pub id: String,
    /// Model input, `num_features` floats per point (`used_feature_list` order).
    pub points: Arc<Vec<f32>>,
    pub num_features: usize,
    /// Points the camera-FOV filter removed (KITTI layout and `FOV_POINTS_ONLY`).
    pub fov_removed: usize,
    pub pillars: usize,
    /// `None` without a label file.
    pub gt: Option<Vec<GtBox>>,
    /// `(dataset root, frame id)` when the scan sits in a KITTI layout with calib and labels
    /// (it can then be evaluated).
    pub kitti: Option<(PathBuf, String)>,
    pub dense: Vec<Detection>,
    pub dense_ms: f64,
}

/// Expands folders (every .bin / .pcd inside, sorted; a KITTI root's `velodyne/`) into files.
pub fn expand_scan_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let velodyne = p.join("velodyne");
            let dir = if velodyne.is_dir() { &velodyne } else { p };
            files.extend(list_scans(dir).map_err(|e| e.to_string())?);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// `root/velodyne/ID.bin` with `root/calib/ID.txt`: (root, id).
fn kitti_layout(path: &Path) -> Option<(PathBuf, String)> {
    let dir = path.parent()?;
    if dir.file_name()? != "velodyne" {
        return None;
    }
    let root = dir.parent()?.to_path_buf();
    let id = path.file_stem()?.to_string_lossy().into_owned();
    root.join(format!("calib/{id}.txt"))
        .is_file()
        .then_some((root, id))
}

/// Reads one scan the way the model sees it and runs the dense model on it.
pub fn load_scan(det: &Detector, path: &Path) -> Result<ScanEntry, String> {
    let layout = kitti_layout(path);
    let fov = match &layout {
        Some((root, id)) if det.config.data.fov_points_only => Some(FovFilter {
            calib: root.join(format!("calib/{id}.txt")),
            image: KITTI_IMAGE,
        }),
        _ => None,
    };
    let used = &det.config.data.used_features;
    let prepared = prepare_scan(path, None, fov.as_ref(), used).map_err(|e| e.to_string())?;
    let (gt, kitti) = match &layout {
        Some((root, id)) => {
            let label = root.join(format!("label_2/{id}.txt"));
            if label.is_file() {
                let calib =
                    Calib::load(root.join(format!("calib/{id}.txt"))).map_err(|e| e.to_string())?;
                let objects = kitti::load_labels(&label).map_err(|e| e.to_string())?;
                let boxes = objects
                    .iter()
                    .filter(|o| !o.is_dontcare())
                    .map(|o| GtBox {
                        class: o.name.clone(),
                        bbox: calib.camera_box_to_lidar(&o.camera_box()),
                    })
                    .collect();
                (Some(boxes), layout.clone())
            } else {
                (None, None)
            }
        }
        None => (None, None),
    };
    let t = std::time::Instant::now();
    let out = det
        .forward(&prepared.points)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let dense = det.decode(&out.raw);
    Ok(ScanEntry {
        path: path.to_path_buf(),
        id: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        num_features: prepared.num_features,
        points: Arc::new(prepared.points),
        fov_removed: prepared.fov_removed,
        pillars: out.pillars.len(),
        gt,
        kitti,
        dense,
        dense_ms: t.elapsed().as_secs_f64() * 1e3,
    })
}

/// Loads scans in order; a file that fails is reported by name and skipped, so one bad scan
/// does not lose the others. Returns the scans and the errors.
pub fn load_scans(
    det: Arc<Detector>,
    paths: Vec<PathBuf>,
    ctl: &JobCtl,
) -> JobResult<(Vec<ScanEntry>, Vec<String>)> {
    let files = expand_scan_paths(&paths)?;
    let mut scans = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if ctl.is_cancelled() {
            return cancelled();
        }
        ctl.step(
            i,
            files.len(),
            &f.file_name().unwrap_or_default().to_string_lossy(),
        );
        match load_scan(&det, f) {
            Ok(s) => scans.push(s),
            Err(e) => errors.push(e),
        }
    }
    ctl.step(files.len(), files.len(), "done");
    Ok((scans, errors))
}

// ----------------------------------------------------------------------------------------
// curves

/// Curves of the current model and scans, and the prune orders they assume.
pub struct CurvesResult {
    pub predicted: Predicted,
    /// Ids of the scans they were computed on.
    pub scan_ids: Vec<String>,
}

pub fn compute_curves(
    det: Arc<Detector>,
    info: ModelInfo,
    scans: Vec<CalibScan>,
    settings: CurveSettings,
    ctl: &JobCtl,
) -> JobResult<CurvesResult> {
    let scan_ids = scans.iter().map(|s| s.id.clone()).collect();
    let predicted = ctl
        .with_control(|c| probe::predicted_curves(&det, &scans, &settings, info, c))
        .map_err(probe_err)?;
    Ok(CurvesResult {
        predicted,
        scan_ids,
    })
}

/// The curve settings the app uses (the CLI's defaults).
pub fn curve_settings(probes: usize, weighting: Weighting) -> CurveSettings {
    CurveSettings {
        probes,
        levels: CurveSettings::even_levels(101),
        seed: 0,
        ranking: crate::prune::Ranking::Magnitude,
        weighting,
        normalization: None,
    }
}

/// Measured curves of every layer at `levels` (slow: one pass over the scans per layer and
/// level). Returns one [`Measured`] per layer, in curve order.
pub fn measure_curves(
    det: Arc<Detector>,
    scans: Vec<CalibScan>,
    curves: Arc<Curves>,
    orders: Arc<Vec<Vec<u32>>>,
    levels: Vec<f64>,
    ctl: &JobCtl,
) -> JobResult<Vec<Measured>> {
    let norms = curves.calibration.normalization.clone();
    let weighting = curves.calibration.distortion;
    let reference = ctl
        .with_control(|c| DenseReference::compute(&det, &scans, weighting, norms, c))
        .map_err(probe_err)?;
    let measurer = Measurer {
        det: &det,
        scans: &scans,
        reference,
        orders: &orders,
    };
    let units: Vec<usize> = (0..curves.layers.len()).collect();
    ctl.with_control(|c| measurer.measured_curves(&units, &levels, c))
        .map_err(probe_err)
}

// ----------------------------------------------------------------------------------------
// planning: frontier and baselines

/// Everything the budget slider queries on every frame: the DP frontier and the prepared
/// baselines, for one (curves, lambdas, constraints, budget kind).
pub struct Planner {
    pub problem: Problem,
    pub kind: BudgetKind,
    pub lambdas: Lambdas,
    pub frontier: Frontier,
    pub baselines: Vec<Prepared>,
    /// Per method (dp first), `(keep, predicted distortion)` for the frontier plot.
    pub series: Vec<(Method, Vec<(f64, f64)>)>,
}

impl Planner {
    /// The allocation of `method` at `keep`.
    pub fn solve(&self, method: Method, keep: f64) -> Result<Solution, String> {
        let r = match method {
            Method::Dp => self.frontier.query(keep),
            m => match self.baselines.iter().find(|b| b.method() == m) {
                Some(b) => b.solve(
                    &self.problem,
                    Budget {
                        kind: self.kind,
                        keep,
                    },
                ),
                None => return Err(format!("{m} is not prepared")),
            },
        };
        r.map_err(|e| e.to_string())
    }
}

/// Builds the frontier and prepares the baselines. Baselines that cannot run (e.g. a
/// constraint they cannot meet) are left out of the comparison rather than failing it all.
pub fn plan(
    curves: Arc<Curves>,
    weights: Arc<Weights>,
    lambdas: Lambdas,
    constraints: HashMap<String, Constraint>,
    kind: BudgetKind,
    ctl: &JobCtl,
) -> JobResult<Planner> {
    let problem =
        Problem::from_curves(&curves, lambdas, &constraints).map_err(|e| e.to_string())?;
    ctl.step(0, 2 + BASELINES.len(), "dynamic program");
    let frontier = Frontier::build(&problem, kind, FRONTIER_BINS).map_err(|e| e.to_string())?;
    let mut series = vec![(Method::Dp, frontier.points())];
    let layer_weights: Vec<Vec<f32>> = curves
        .layers
        .iter()
        .map(|l| weights.tensor_any_shape(&l.name).map(|t| t.data))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let refs: Vec<&[f32]> = layer_weights.iter().map(Vec::as_slice).collect();
    let mut baselines = Vec::new();
    for (i, m) in BASELINES.into_iter().enumerate() {
        if ctl.is_cancelled() {
            return cancelled();
        }
        ctl.step(1 + i, 2 + BASELINES.len(), m.name());
        let Ok(p) = Prepared::new(m, &problem, Some(&refs)) else {
            continue;
        };
        let pts: Vec<(f64, f64)> = (1..=100)
            .filter_map(|k| {
                let keep = k as f64 / 100.0;
                p.solve(&problem, Budget { kind, keep })
                    .ok()
                    .map(|s| (keep, s.predicted))
            })
            .collect();
        series.push((m, pts));
        baselines.push(p);
    }
    ctl.step(2 + BASELINES.len(), 2 + BASELINES.len(), "done");
    Ok(Planner {
        problem,
        kind,
        lambdas,
        frontier,
        baselines,
        series,
    })
}

// ----------------------------------------------------------------------------------------
// pruned detections and evaluation

/// The pruned model's detections on one scan, for one allocation.
pub struct PrunedDetections {
    pub scan_id: String,
    pub sparsity: Vec<f64>,
    pub detections: Vec<Detection>,
    pub ms: f64,
}

pub fn pruned_detections(
    det: Arc<Detector>,
    orders: Arc<Vec<Vec<u32>>>,
    sparsity: Vec<f64>,
    scan_id: String,
    points: Arc<Vec<f32>>,
    ctl: &JobCtl,
) -> JobResult<PrunedDetections> {
    let t = std::time::Instant::now();
    ctl.step(0, 2, "pruning");
    let pruned = pruned_detector(&det, &sparsity, &orders).map_err(probe_err)?;
    if ctl.is_cancelled() {
        return cancelled();
    }
    ctl.step(1, 2, "forward");
    let detections = pruned.detect(&points).map_err(|e| e.to_string())?;
    ctl.step(2, 2, "done");
    Ok(PrunedDetections {
        scan_id,
        sparsity,
        detections,
        ms: t.elapsed().as_secs_f64() * 1e3,
    })
}

/// Moderate R40 AP of the dense and the pruned model on the labelled scans.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalPoint {
    pub method: Method,
    pub keep: f64,
    pub dense: Accuracy,
    pub pruned: Accuracy,
    pub frames: usize,
}

/// Evaluates on the scans that sit in KITTI layouts (grouped by dataset root).
pub fn evaluate(
    det: Arc<Detector>,
    orders: Arc<Vec<Vec<u32>>>,
    sparsity: Vec<f64>,
    method: Method,
    keep: f64,
    frames: Vec<(PathBuf, String)>,
    ctl: &JobCtl,
) -> JobResult<EvalPoint> {
    if frames.is_empty() {
        return Err("no labelled scans: add scans in KITTI layout (velodyne/, calib/, label_2/) to evaluate".into());
    }
    let pruned = pruned_detector(&det, &sparsity, &orders).map_err(probe_err)?;
    let mut by_root: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for (root, id) in frames {
        match by_root.iter_mut().find(|(r, _)| *r == root) {
            Some((_, ids)) => ids.push(id),
            None => by_root.push((root, vec![id])),
        }
    }
    let total: usize = by_root.iter().map(|(_, ids)| ids.len()).sum();
    let used = det.config.data.used_features.clone();
    let classes = model_classes(&det).map_err(|e| e.to_string())?;
    // All frames are evaluated together, whatever root they come from.
    let (mut gt, mut dense_dt, mut pruned_dt) = (Vec::new(), Vec::new(), Vec::new());
    let mut done = 0;
    for (root, ids) in &by_root {
        let set = EvalSet::load(root, ids, KITTI_IMAGE, &used, &ctl.cancel, &|_, _| {})
            .map_err(|e| e.to_string())?;
        let base = done;
        let progress = |k: usize, _: usize| ctl.step(base + k, 2 * total, "evaluating");
        dense_dt.extend(
            set.detections(&det, &ctl.cancel, &progress)
                .map_err(|e| e.to_string())?,
        );
        let base = total + done;
        let progress = |k: usize, _: usize| ctl.step(base + k, 2 * total, "evaluating");
        pruned_dt.extend(
            set.detections(&pruned, &ctl.cancel, &progress)
                .map_err(|e| e.to_string())?,
        );
        gt.extend(set.frames.into_iter().map(|f| f.labels));
        done += ids.len();
    }
    let accuracy = |dt: &[Vec<crate::pointcloud::kitti::KittiObject>]| {
        crate::eval::evaluate(&gt, dt, &classes)
            .map(|r| Accuracy::of(&r, &classes))
            .map_err(|e| e.to_string())
    };
    Ok(EvalPoint {
        method,
        keep,
        dense: accuracy(&dense_dt)?,
        pruned: accuracy(&pruned_dt)?,
        frames: total,
    })
}

// ----------------------------------------------------------------------------------------
// export

use crate::prune::export::{ALLOCATION_FILE, CSV_FILE, CURVES_FILE, MASKS_FILE, PRUNED_FILE};

/// Which files to write (see the export dialog for what each one is).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExportChoice {
    pub dir: PathBuf,
    pub masks: bool,
    pub pruned: bool,
    pub allocation: bool,
    pub csv: bool,
    pub curves: bool,
}

impl ExportChoice {
    pub fn files(&self) -> Vec<PathBuf> {
        [
            (self.masks, MASKS_FILE),
            (self.pruned, PRUNED_FILE),
            (self.allocation, ALLOCATION_FILE),
            (self.csv, CSV_FILE),
            (self.curves, CURVES_FILE),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, f)| self.dir.join(f))
        .collect()
    }
}

/// Writes the chosen files (each atomically: a failure leaves no partial file).
pub fn export(
    weights_path: PathBuf,
    weights: Arc<Weights>,
    curves: Arc<Curves>,
    alloc: Allocation,
    choice: ExportChoice,
    ctl: &JobCtl,
) -> JobResult<Vec<PathBuf>> {
    let files = choice.files();
    if files.is_empty() {
        return Err("nothing to export: choose at least one file".into());
    }
    std::fs::create_dir_all(&choice.dir)
        .map_err(|e| format!("{}: cannot create the folder: {e}", choice.dir.display()))?;
    let inputs = [weights_path.as_path()];
    let total = files.len();
    let mut written = Vec::new();
    let step = |what: &str, written: &Vec<PathBuf>| ctl.step(written.len(), total, what);
    let sha = &alloc.model.weights_sha256;
    let masks = if choice.masks || choice.pruned || choice.csv {
        step("masks", &written);
        Some(export::build_masks(&alloc, &weights, Orders::Magnitude).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let err = |e: export::ExportError| e.to_string();
    if let Some(m) = &masks {
        if choice.masks {
            let p = choice.dir.join(MASKS_FILE);
            export::write_masks(&p, m, &alloc, sha, &inputs).map_err(err)?;
            written.push(p);
        }
        if choice.pruned {
            step("pruned weights", &written);
            let p = choice.dir.join(PRUNED_FILE);
            export::write_pruned(&p, &weights, m, &alloc, &inputs).map_err(err)?;
            written.push(p);
        }
        if choice.csv {
            let p = choice.dir.join(CSV_FILE);
            export::write_csv(&p, &alloc, m, Some(&curves), &inputs).map_err(err)?;
            written.push(p);
        }
    }
    if choice.allocation {
        let p = choice.dir.join(ALLOCATION_FILE);
        write_atomic(&p, alloc.to_json().as_bytes(), &inputs).map_err(|e| e.to_string())?;
        written.push(p);
    }
    if choice.curves {
        let p = choice.dir.join(CURVES_FILE);
        write_atomic(&p, curves.to_json().as_bytes(), &inputs).map_err(|e| e.to_string())?;
        written.push(p);
    }
    step("done", &written);
    Ok(written)
}

/// The allocation record of `solution`.
pub fn allocation_record(
    planner: &Planner,
    solution: &Solution,
    method: Method,
    keep: f64,
    curves: &Curves,
) -> Allocation {
    solution.to_allocation(
        &planner.problem,
        method,
        Budget {
            kind: planner.kind,
            keep,
        },
        curves.model.clone(),
        curves.calibration.ranking,
        planner.lambdas,
    )
}
