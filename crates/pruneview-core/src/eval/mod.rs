//! KITTI-style 3-D detection evaluation: AP for image boxes, BEV and 3-D boxes at 11 and 40
//! recall points, for easy / moderate / hard, with the official matching rules.
//!
//! It reproduces OpenPCDet's `kitti_object_eval_python` (`get_official_eval_result`, from
//! traveller59's second.pytorch), the evaluator behind every KITTI number OpenPCDet prints, so
//! APs computed here can be compared with published ones:
//!
//! - difficulties filter ground truth by 2-D box height, occlusion and truncation
//!   ([`Difficulty::limits`]); detections lower than the min height are ignored;
//! - Van is a neighbour of Car and Person_sitting of Pedestrian: matching one is neither a TP
//!   nor an FP; DontCare regions absorb detections for the image-box metric only;
//! - per-class minimum overlaps ([`KittiClass::min_overlap`], strict set: Car 0.7, Pedestrian
//!   and Cyclist 0.5; or the loose set);
//! - precision sampled at the score thresholds chosen by `get_thresholds` (41 points), AP|R11 and
//!   AP|R40 from that curve.
//!
//! See [`matching`] for the rules in detail. The only intended difference is the rotated IoU:
//! the official code intersects polygons in float32 on the GPU (`rotate_iou_gpu_eval`); we use
//! the exact f64 clipping of [`crate::boxes::iou`], so an overlap within float32 rounding of a
//! threshold may fall on the other side.
//!
//! Inputs are per-frame `label_2` objects ([`crate::pointcloud::kitti::parse_labels`]) for
//! ground truth and detections alike (a KITTI result file is a label file with a 16th field, the
//! score; a missing score counts as 0, as `get_label_annos` reads it).

pub mod dataset;
pub mod matching;
pub mod overlap;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::pointcloud::KittiObject;
use crate::pointcloud::kitti::{KittiError, load_labels};

pub use dataset::{DatasetError, EvalSet, model_classes};

use matching::{FrameView, SAMPLE_POINTS, ap_r11, ap_r40, clean_frame, precision_curve};

/// Objects per frame: `frames[i]` holds the label lines of frame `i`.
pub type Frames = Vec<Vec<KittiObject>>;

/// Format tag of the JSON report.
pub const REPORT_FORMAT: &str = "pruneview-kitti-eval/1";

/// Errors of the evaluator and its loaders.
#[derive(Debug, Error)]
pub enum EvalError {
    #[error(
        "{gt} ground-truth frames but {dt} detection frames: give one (possibly empty) \
         detection list per ground-truth frame, in the same order"
    )]
    FrameCount { gt: usize, dt: usize },
    #[error(
        "unknown KITTI class '{name}': expected one of {}",
        KittiClass::names()
    )]
    UnknownClass { name: String },
    #[error("no frames to evaluate in {}: no *.txt files", dir.display())]
    NoFrames { dir: PathBuf },
    #[error(
        "{}: holds none of the frames' result files (the first would be {first}.txt); check the folder and the split",
        dir.display()
    )]
    NoResults { dir: PathBuf, first: String },
    #[error("cannot list {}: {source}", dir.display())]
    ListDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Labels(#[from] KittiError),
}

/// The classes the official evaluator knows (its `class_to_name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KittiClass {
    Car,
    Pedestrian,
    Cyclist,
    Van,
    #[serde(rename = "Person_sitting")]
    PersonSitting,
    Truck,
}

impl KittiClass {
    pub const ALL: [KittiClass; 6] = [
        KittiClass::Car,
        KittiClass::Pedestrian,
        KittiClass::Cyclist,
        KittiClass::Van,
        KittiClass::PersonSitting,
        KittiClass::Truck,
    ];

    /// The three classes OpenPCDet's KITTI models detect and report.
    pub const DEFAULT: [KittiClass; 3] =
        [KittiClass::Car, KittiClass::Pedestrian, KittiClass::Cyclist];

    /// The label-file name (`Car`, ..., `Person_sitting`, `Truck`).
    pub fn name(self) -> &'static str {
        match self {
            KittiClass::Car => "Car",
            KittiClass::Pedestrian => "Pedestrian",
            KittiClass::Cyclist => "Cyclist",
            KittiClass::Van => "Van",
            KittiClass::PersonSitting => "Person_sitting",
            KittiClass::Truck => "Truck",
        }
    }

    fn names() -> String {
        KittiClass::ALL.map(KittiClass::name).join(", ")
    }

    /// The ground-truth class whose objects are ignored rather than missed when evaluating
    /// this one: Van for Car, Person_sitting for Pedestrian.
    pub fn neighbour(self) -> Option<&'static str> {
        match self {
            KittiClass::Car => Some("Van"),
            KittiClass::Pedestrian => Some("Person_sitting"),
            _ => None,
        }
    }

    fn index(self) -> usize {
        KittiClass::ALL
            .iter()
            .position(|&c| c == self)
            .unwrap_or_default()
    }

    /// Minimum overlap for a true positive (`overlap_0_7` / `overlap_0_5` in
    /// `get_official_eval_result`); a match needs an overlap strictly above it.
    pub fn min_overlap(self, metric: Metric, set: IouSet) -> f64 {
        // Rows: bbox, bev, 3d. Columns: Car, Pedestrian, Cyclist, Van, Person_sitting, Truck.
        const STRICT: [[f64; 6]; 3] = [[0.7, 0.5, 0.5, 0.7, 0.5, 0.7]; 3];
        const LOOSE: [[f64; 6]; 3] = [
            [0.7, 0.5, 0.5, 0.7, 0.5, 0.5],
            [0.5, 0.25, 0.25, 0.5, 0.25, 0.5],
            [0.5, 0.25, 0.25, 0.5, 0.25, 0.5],
        ];
        let table = match set {
            IouSet::Strict => &STRICT,
            IouSet::Loose => &LOOSE,
        };
        table[metric.index()][self.index()]
    }
}

impl FromStr for KittiClass {
    type Err = EvalError;

    /// Case-insensitive, as the official evaluator compares names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KittiClass::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| EvalError::UnknownClass {
                name: s.to_string(),
            })
    }
}

impl std::fmt::Display for KittiClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// KITTI difficulty levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Difficulty {
    Easy,
    Moderate,
    Hard,
}

impl Difficulty {
    pub const ALL: [Difficulty; 3] = [Difficulty::Easy, Difficulty::Moderate, Difficulty::Hard];

    pub fn name(self) -> &'static str {
        match self {
            Difficulty::Easy => "easy",
            Difficulty::Moderate => "moderate",
            Difficulty::Hard => "hard",
        }
    }

    /// `(MIN_HEIGHT, MAX_OCCLUSION, MAX_TRUNCATION)`: easy (40 px, 0, 0.15), moderate (25 px,
    /// 1, 0.30), hard (25 px, 2, 0.50). A ground-truth object counts if its 2-D box is taller
    /// than the min height and neither limit is exceeded.
    pub fn limits(self) -> (f32, i32, f32) {
        match self {
            Difficulty::Easy => (40.0, 0, 0.15),
            Difficulty::Moderate => (25.0, 1, 0.3),
            Difficulty::Hard => (25.0, 2, 0.5),
        }
    }
}

/// What is overlapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Metric {
    /// Axis-aligned 2-D IoU of the image boxes.
    #[serde(rename = "bbox")]
    Bbox,
    /// Rotated IoU of the footprints in the camera x-z plane.
    #[serde(rename = "bev")]
    Bev,
    /// BEV overlap x overlap along camera y, over the union of volumes.
    #[serde(rename = "3d")]
    ThreeD,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::Bbox, Metric::Bev, Metric::ThreeD];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Bbox => "bbox",
            Metric::Bev => "bev",
            Metric::ThreeD => "3d",
        }
    }

    fn index(self) -> usize {
        match self {
            Metric::Bbox => 0,
            Metric::Bev => 1,
            Metric::ThreeD => 2,
        }
    }
}

/// Which minimum-overlap set to use (the official evaluator prints both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IouSet {
    /// Car 0.7, Pedestrian 0.5, Cyclist 0.5 for every metric (the reported numbers).
    #[default]
    Strict,
    /// BEV / 3-D: Car 0.5, Pedestrian 0.25, Cyclist 0.25.
    Loose,
}

/// Recall sampling of an AP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecallPoints {
    /// 11 points (samples 0, 4, ..., 40): the original KITTI metric.
    R11,
    /// 40 points (samples 1..=40): the metric KITTI switched to in 2019.
    R40,
}

/// What to evaluate.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalOptions {
    pub classes: Vec<KittiClass>,
    pub metrics: Vec<Metric>,
    pub iou_set: IouSet,
}

impl Default for EvalOptions {
    /// Car, Pedestrian, Cyclist; bbox, BEV and 3-D; the strict overlaps.
    fn default() -> Self {
        EvalOptions {
            classes: KittiClass::DEFAULT.to_vec(),
            metrics: Metric::ALL.to_vec(),
            iou_set: IouSet::Strict,
        }
    }
}

/// AP of one class, difficulty and metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApResult {
    pub class: KittiClass,
    pub difficulty: Difficulty,
    pub metric: Metric,
    /// The overlap a match must exceed.
    pub min_overlap: f64,
    /// Ground-truth objects that count (not ignored) over all frames.
    pub num_valid_gt: usize,
    /// AP|R11 in percent.
    pub ap_r11: f64,
    /// AP|R40 in percent.
    pub ap_r40: f64,
    /// The 41 sampled score thresholds actually found (at most 41, highest first).
    pub thresholds: Vec<f64>,
    /// Interpolated precision at the 41 samples.
    pub precision: Vec<f64>,
    /// Recall at the 41 samples (max over the tail, as the official code keeps it).
    pub recall: Vec<f64>,
    /// AOS|R11 and AOS|R40 in percent: image-box results only, and only when the detections
    /// carry observation angles (the first detection's alpha is not -10, the official rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aos_r11: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aos_r40: Option<f64>,
}

impl ApResult {
    pub fn ap(&self, points: RecallPoints) -> f64 {
        match points {
            RecallPoints::R11 => self.ap_r11,
            RecallPoints::R40 => self.ap_r40,
        }
    }
}

/// Every AP of one evaluation, class-major, then metric, then difficulty.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub format: String,
    pub frames: usize,
    pub iou_set: IouSet,
    pub results: Vec<ApResult>,
}

impl EvalReport {
    /// The result for one class, metric and difficulty, if it was evaluated.
    pub fn get(
        &self,
        class: KittiClass,
        metric: Metric,
        difficulty: Difficulty,
    ) -> Option<&ApResult> {
        self.results
            .iter()
            .find(|r| r.class == class && r.metric == metric && r.difficulty == difficulty)
    }

    /// Shorthand for `get(..).ap(points)`.
    pub fn ap(
        &self,
        class: KittiClass,
        metric: Metric,
        difficulty: Difficulty,
        points: RecallPoints,
    ) -> Option<f64> {
        self.get(class, metric, difficulty).map(|r| r.ap(points))
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain structs of numbers and strings cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a report written by [`EvalReport::to_json`].
    pub fn from_json(text: &str) -> serde_json::Result<EvalReport> {
        serde_json::from_str(text)
    }

    /// OpenPCDet's `ret_dict` keys for the strict set (`Car_3d_moderate_R40`, `Car_bev_easy`,
    /// `Car_image_hard`, ...), R11 without a suffix.
    pub fn openpcdet_dict(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for r in &self.results {
            let metric = match r.metric {
                Metric::Bbox => "image",
                Metric::Bev => "bev",
                Metric::ThreeD => "3d",
            };
            let key = format!("{}_{}_{}", r.class.name(), metric, r.difficulty.name());
            out.push((key.clone(), r.ap_r11));
            out.push((format!("{key}_R40"), r.ap_r40));
        }
        out
    }

    /// A fixed-width table: one row per class and metric, AP|R11 and AP|R40 for easy,
    /// moderate and hard.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "KITTI AP ({} frames, {} overlaps)",
            self.frames,
            match self.iou_set {
                IouSet::Strict => "strict",
                IouSet::Loose => "loose",
            }
        );
        let _ = writeln!(
            s,
            "{:<15} {:<6} {:>4} {:>6} | {:>7} {:>7} {:>7} | {:>7} {:>7} {:>7}",
            "class",
            "metric",
            "IoU",
            "GT mod",
            "R11 E",
            "R11 M",
            "R11 H",
            "R40 E",
            "R40 M",
            "R40 H"
        );
        let mut rows: Vec<(KittiClass, Metric)> = Vec::new();
        for r in &self.results {
            if !rows.contains(&(r.class, r.metric)) {
                rows.push((r.class, r.metric));
            }
        }
        let cell = |class, metric, diff, pts| match self.ap(class, metric, diff, pts) {
            Some(v) => format!("{v:>7.2}"),
            None => format!("{:>7}", "-"),
        };
        for (class, metric) in rows {
            let first = self
                .results
                .iter()
                .find(|r| r.class == class && r.metric == metric);
            let iou = first.map(|r| r.min_overlap).unwrap_or_default();
            let gt_mod = self
                .get(class, metric, Difficulty::Moderate)
                .map(|r| r.num_valid_gt.to_string())
                .unwrap_or_else(|| "-".into());
            let _ = write!(
                s,
                "{:<15} {:<6} {:>4.2} {:>6} |",
                class.name(),
                metric.name(),
                iou,
                gt_mod
            );
            for pts in [RecallPoints::R11, RecallPoints::R40] {
                for diff in Difficulty::ALL {
                    let _ = write!(s, " {}", cell(class, metric, diff, pts));
                }
                if pts == RecallPoints::R11 {
                    s.push_str(" |");
                }
            }
            s.push('\n');
        }
        s
    }
}

/// Evaluates `classes` with the strict overlaps and all three metrics. `gt[i]` and `dt[i]`
/// are the objects of frame `i`; DontCare and other classes may stay in the ground truth.
pub fn evaluate(
    gt: &[Vec<KittiObject>],
    dt: &[Vec<KittiObject>],
    classes: &[KittiClass],
) -> Result<EvalReport, EvalError> {
    evaluate_with(
        gt,
        dt,
        &EvalOptions {
            classes: classes.to_vec(),
            ..EvalOptions::default()
        },
    )
}

/// [`evaluate`] with explicit options.
pub fn evaluate_with(
    gt: &[Vec<KittiObject>],
    dt: &[Vec<KittiObject>],
    opts: &EvalOptions,
) -> Result<EvalReport, EvalError> {
    if gt.len() != dt.len() {
        return Err(EvalError::FrameCount {
            gt: gt.len(),
            dt: dt.len(),
        });
    }
    let scores: Vec<Vec<f64>> = dt
        .iter()
        .map(|f| {
            f.iter()
                .map(|d| f64::from(d.score.unwrap_or(0.0)))
                .collect()
        })
        .collect();
    let bboxes: Vec<Vec<[f32; 4]>> = dt
        .iter()
        .map(|f| f.iter().map(|d| d.bbox).collect())
        .collect();
    let alphas = |frames: &[Vec<KittiObject>]| -> Vec<Vec<f32>> {
        frames
            .iter()
            .map(|f| f.iter().map(|o| o.alpha).collect())
            .collect()
    };
    let (dt_alphas, gt_alphas) = (alphas(dt), alphas(gt));
    // As `get_official_eval_result`: AOS when the first frame with detections has a real
    // alpha (-10 marks "not estimated").
    let compute_aos = dt
        .iter()
        .find(|f| !f.is_empty())
        .is_some_and(|f| f[0].alpha != -10.0);
    let mut results = Vec::new();
    // Overlaps depend only on the metric; roles only on class and difficulty.
    let overlaps: Vec<(Metric, Vec<Vec<f64>>)> = opts
        .metrics
        .iter()
        .map(|&m| {
            let per_frame = gt
                .iter()
                .zip(dt)
                .map(|(g, d)| overlap::overlap_matrix(d, g, m))
                .collect();
            (m, per_frame)
        })
        .collect();
    for &class in &opts.classes {
        let cleans: Vec<Vec<matching::CleanFrame>> = Difficulty::ALL
            .iter()
            .map(|&diff| {
                gt.iter()
                    .zip(dt)
                    .map(|(g, d)| clean_frame(g, d, class, diff))
                    .collect()
            })
            .collect();
        for (metric, per_frame) in &overlaps {
            let min_overlap = class.min_overlap(*metric, opts.iou_set);
            for (di, &difficulty) in Difficulty::ALL.iter().enumerate() {
                let views: Vec<FrameView<'_>> = (0..gt.len())
                    .map(|i| FrameView {
                        overlaps: &per_frame[i],
                        clean: &cleans[di][i],
                        dt_scores: &scores[i],
                        dt_bboxes: &bboxes[i],
                        dt_alphas: &dt_alphas[i],
                        gt_alphas: &gt_alphas[i],
                    })
                    .collect();
                let curve = precision_curve(&views, *metric, min_overlap);
                debug_assert_eq!(curve.precision.len(), SAMPLE_POINTS);
                let aos = compute_aos && *metric == Metric::Bbox;
                results.push(ApResult {
                    class,
                    difficulty,
                    metric: *metric,
                    min_overlap,
                    num_valid_gt: curve.num_valid_gt,
                    ap_r11: ap_r11(&curve.precision),
                    ap_r40: ap_r40(&curve.precision),
                    thresholds: curve.thresholds,
                    aos_r11: aos.then(|| ap_r11(&curve.orientation)),
                    aos_r40: aos.then(|| ap_r40(&curve.orientation)),
                    precision: curve.precision,
                    recall: curve.recall,
                });
            }
        }
    }
    Ok(EvalReport {
        format: REPORT_FORMAT.to_string(),
        frames: gt.len(),
        iou_set: opts.iou_set,
        results,
    })
}

/// The text `get_official_eval_result` prints (OpenPCDet's KITTI evaluator), for `classes`:
/// per class, for the strict then the loose overlaps, an `AP@` block (R11) and an `AP_R40@`
/// block, each with bbox / bev / 3d lines (easy, moderate, hard; 4 decimals) and an aos line
/// (2 decimals) when the detections carry angles. Checks elsewhere parse this layout.
pub fn official_result(
    gt: &[Vec<KittiObject>],
    dt: &[Vec<KittiObject>],
    classes: &[KittiClass],
) -> Result<String, EvalError> {
    let run = |iou_set| {
        evaluate_with(
            gt,
            dt,
            &EvalOptions {
                classes: classes.to_vec(),
                metrics: Metric::ALL.to_vec(),
                iou_set,
            },
        )
    };
    let sets = [run(IouSet::Strict)?, run(IouSet::Loose)?];
    let mut s = String::new();
    for &class in classes {
        for report in &sets {
            let result = |m: Metric, d: Difficulty| report.get(class, m, d);
            let overlaps: Vec<String> = [Metric::Bbox, Metric::Bev, Metric::ThreeD]
                .iter()
                .map(|&m| format!("{:.2}", class.min_overlap(m, report.iou_set)))
                .collect();
            for (label, points) in [("AP", RecallPoints::R11), ("AP_R40", RecallPoints::R40)] {
                let _ = writeln!(s, "{} {label}@{}:", class.name(), overlaps.join(", "));
                let line = |value: &dyn Fn(Difficulty) -> Option<f64>, decimals: usize| {
                    Difficulty::ALL
                        .iter()
                        .map(|&d| format!("{:.*}", decimals, value(d).unwrap_or(0.0)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                for (name, metric) in [
                    ("bbox", Metric::Bbox),
                    ("bev ", Metric::Bev),
                    ("3d  ", Metric::ThreeD),
                ] {
                    let v = line(&|d| result(metric, d).map(|r| r.ap(points)), 4);
                    let _ = writeln!(s, "{name} AP:{v}");
                }
                let aos = |d| {
                    let r = result(Metric::Bbox, d)?;
                    match points {
                        RecallPoints::R11 => r.aos_r11,
                        RecallPoints::R40 => r.aos_r40,
                    }
                };
                if Difficulty::ALL.iter().any(|&d| aos(d).is_some()) {
                    let _ = writeln!(s, "aos  AP:{}", line(&aos, 2));
                }
            }
        }
    }
    Ok(s)
}

/// The frame ids of a `label_2`-style directory: the stems of its `*.txt` files, sorted.
pub fn frame_ids(dir: impl AsRef<Path>) -> Result<Vec<String>, EvalError> {
    let dir = dir.as_ref();
    let list_err = |source| EvalError::ListDir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list_err)? {
        let path = entry.map_err(list_err)?.path();
        if path.extension().is_some_and(|e| e == "txt")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            ids.push(stem.to_string());
        }
    }
    if ids.is_empty() {
        return Err(EvalError::NoFrames {
            dir: dir.to_path_buf(),
        });
    }
    ids.sort();
    Ok(ids)
}

/// Loads `{label_dir}/{id}.txt` and `{result_dir}/{id}.txt` for every id: ground truth and
/// detections, ready for [`evaluate`]. A missing result file is a frame without detections
/// (as OpenPCDet reads it), but a result folder with none of the frames is an error: it is
/// the wrong folder or split.
pub fn load_frames(
    label_dir: impl AsRef<Path>,
    result_dir: impl AsRef<Path>,
    ids: &[String],
) -> Result<(Frames, Frames), EvalError> {
    let (label_dir, result_dir) = (label_dir.as_ref(), result_dir.as_ref());
    let mut gt = Vec::with_capacity(ids.len());
    let mut dt = Vec::with_capacity(ids.len());
    let mut found = 0;
    for id in ids {
        gt.push(load_labels(label_dir.join(format!("{id}.txt")))?);
        let result = result_dir.join(format!("{id}.txt"));
        if result.exists() {
            found += 1;
            dt.push(load_labels(result)?);
        } else {
            dt.push(Vec::new());
        }
    }
    if found == 0 && !ids.is_empty() {
        return Err(EvalError::NoResults {
            dir: result_dir.to_path_buf(),
            first: ids[0].clone(),
        });
    }
    Ok((gt, dt))
}
