//! The app's state and its reactions: what is open, what the user chose, and which job to
//! start when something changes. Drawing lives in `ui`; model work lives in `work`.
//!
//! Everything that follows from the budget on every frame (the DP allocation, the baseline
//! to compare with) is a query of the precomputed [`Planner`], microseconds; everything
//! slower is a job whose result comes back tagged with the model generation it was started
//! for, so results of a model that has since been replaced are dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pruneview_core::eval::EvalSet;
use pruneview_core::pointcloud::scan::is_scan_file;
use pruneview_core::prune::alloc::{Constraint, Method, Solution};
use pruneview_core::prune::curves::Curves;
use pruneview_core::prune::probe::CalibScan;
use pruneview_core::prune::recover::RecoverSettings;
use pruneview_core::prune::{BudgetKind, Lambdas, Weighting};
use pruneview_core::session::compare::{self, DetectionDiff};
use pruneview_core::session::evaluate::EvalSource;
use pruneview_core::session::model::LoadedModel;
use pruneview_core::session::plan::{self, Planner};
use pruneview_core::session::recover::Recovery;
use pruneview_core::session::scans::{self, ScanEntry};

use super::cache::{Cache, Entry};
use super::jobs::{JobError, JobKind, Jobs};
use super::view3d::{ColorBy, Projection};
use super::work::{
    self, CurvesCache, CurvesResult, EvalFrames, EvalPoint, ExportChoice, OpenRequest,
    PREVIEW_SCANS, PrunedDetections, PrunedModel, RecoveredModel,
};

/// How long the budget must stay still (moved by keys, or by a pointer still held) before
/// the pruned detections are recomputed: longer than a held key's repeat, so holding one
/// does not start a forward per step. Letting the slider go starts it at once.
pub const SETTLE: Duration = Duration::from_millis(100);

/// What persists between runs (eframe storage): the last files and every user choice.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The files opened last (reopened at start when they still exist).
    pub open: Option<OpenRequest>,
    pub lambdas: Lambdas,
    pub weighting: Weighting,
    /// Rademacher probes per scan and group for the curves.
    pub probes: usize,
    /// Compute curves as soon as a model and scans are open.
    pub auto_curves: bool,
    pub budget_kind: BudgetKind,
    /// Fraction of the budget kind kept.
    pub keep: f64,
    /// The baseline compared with the DP (a method name), if any.
    pub compare: Option<String>,
    /// What Evaluate runs on (a held-out set by default, never the calibration scans unless
    /// chosen).
    pub eval_source: EvalSource,
    /// Per-layer constraints by weight name.
    pub constraints: HashMap<String, Constraint>,
    /// How the pruned model is recovered (the detections shown, Evaluate and Export).
    pub recovery: Recovery,
    /// Adam steps of a full recovery's distillation.
    pub distill_steps: usize,
    pub color_by: ColorBy,
    pub projection: Projection,
    pub score_threshold: f32,
    pub show_gt: bool,
    pub show_dense: bool,
    pub show_pruned: bool,
    /// Dense and pruned boxes in one view, or side by side.
    pub comparison: Comparison,
    pub export: ExportChoice,
    pub debug_overlay: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            open: None,
            lambdas: Lambdas::default(),
            weighting: Weighting::Detection,
            probes: 2,
            auto_curves: true,
            budget_kind: BudgetKind::Flops,
            keep: 0.5,
            compare: Some("lamp".into()),
            eval_source: EvalSource::default(),
            constraints: HashMap::new(),
            recovery: Recovery::Statistics,
            distill_steps: pruneview_core::prune::recover::DistillSettings::default().steps,
            color_by: ColorBy::Height,
            projection: Projection::Perspective,
            score_threshold: 0.3,
            show_gt: true,
            show_dense: true,
            show_pruned: true,
            comparison: Comparison::Overlay,
            export: ExportChoice {
                dir: default_export_dir(),
                masks: true,
                pruned: true,
                allocation: true,
                csv: true,
                curves: true,
            },
            debug_overlay: false,
        }
    }
}

/// How the 3D view shows the dense and the pruned detections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Comparison {
    /// Both box sets in one view, in their own colours.
    #[default]
    Overlay,
    /// Dense on the left, pruned on the right, one camera for both; boxes coloured by what
    /// became of them (matched, missed, new), since coincident boxes hide each other.
    SideBySide,
}

impl Settings {
    pub fn compare_method(&self) -> Option<Method> {
        self.compare.as_deref().and_then(|m| m.parse().ok())
    }
}

/// What a native dialog was opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    Model,
    Config,
    Scans,
    ScanFolder,
    ExportDir,
    /// A labelled KITTI-layout folder to evaluate on.
    EvalFolder,
}

/// A job's value.
pub enum Output {
    Model(Box<LoadedModel>, OpenRequest),
    Scans {
        scans: Vec<ScanEntry>,
        errors: Vec<String>,
    },
    Curves(Box<CurvesResult>),
    Planner(Box<Planner>),
    Pruned(PrunedDetections),
    /// Measured curves, and a note when they could not be cached.
    Measured(Vec<pruneview_core::prune::curves::Measured>, Option<String>),
    /// An evaluation, the set it read or generated (kept for the next one), and a note
    /// when it could not be cached.
    Eval {
        point: EvalPoint,
        set: Option<Arc<EvalSet>>,
        note: Option<String>,
    },
    Recovered(Box<RecoveredModel>),
    Exported(Vec<PathBuf>, Option<String>),
    Picked(Pick, Vec<PathBuf>),
    /// No dialog could open (why).
    DialogFailed(Pick, String),
    /// The model of this request did not load (why, naming the file).
    ModelFailed(OpenRequest, String),
}

/// How a file dialog is shown: the native one ([`crate::dialogs::native`]), or a stand-in in
/// tests. `Ok(vec![])` is a cancel; `Err` says why no dialog opened.
pub type FileDialog = Arc<dyn Fn(Pick) -> Result<Vec<PathBuf>, String> + Send + Sync>;

/// A job's value and the model generation it belongs to (`None`: any, e.g. a file dialog).
pub struct Tagged {
    pub generation: Option<u64>,
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Error,
}

/// A message for the user (job errors, bad files, what was written).
#[derive(Clone, Debug)]
pub struct Message {
    pub level: Level,
    pub text: String,
}

/// The allocation the budget currently gives, and the budget it was asked for.
#[derive(Clone, Debug)]
pub struct Current {
    pub keep: f64,
    pub kind: BudgetKind,
    pub dp: Result<Solution, String>,
    pub compare: Option<(Method, Result<Solution, String>)>,
    /// What the budget panel warns of for the DP allocation (layers cut, flat curves).
    pub warnings: Vec<String>,
}

/// How far the pipeline has got towards an allocation: what the budget panel and the 3D
/// view's status line say, from the jobs actually running (never "preparing" when nothing
/// is).
#[derive(Clone, Debug, PartialEq)]
pub enum PlanStatus {
    NoModel,
    ModelLoading,
    NoScans,
    ScansLoading,
    /// Scans are open, no curves and no curves job (auto curves off, or it failed).
    NoCurves,
    CurvesRunning,
    /// Curves, but no frontier and no frontier job (it failed).
    NoFrontier,
    FrontierRunning,
    /// The frontier has no allocation at this budget (why).
    NoAllocation(String),
    Ready,
}

impl PlanStatus {
    /// The budget panel's sentence.
    pub fn explain(&self) -> String {
        match self {
            PlanStatus::NoModel => "Open a model (File > Open model) to plan an allocation.".into(),
            PlanStatus::ModelLoading => "Loading the model...".into(),
            PlanStatus::NoScans => "Add calibration scans: the curves are computed on them.".into(),
            PlanStatus::ScansLoading => "Reading the scans...".into(),
            PlanStatus::NoCurves => "No curves yet: press Compute curves.".into(),
            PlanStatus::CurvesRunning => {
                "The allocation appears when the curves are ready (see Jobs).".into()
            }
            PlanStatus::NoFrontier => "No frontier: its job failed (see Messages). Change the \
                 constraints or the group weights, or recompute the curves."
                .into(),
            PlanStatus::FrontierRunning => "Preparing the frontier...".into(),
            PlanStatus::NoAllocation(e) => format!("No allocation at this budget: {e}"),
            PlanStatus::Ready => String::new(),
        }
    }

    /// The same, in a few words (the 3D view's status line).
    pub fn short(&self) -> String {
        match self {
            PlanStatus::NoModel => "no model".into(),
            PlanStatus::ModelLoading => "waiting for the model".into(),
            PlanStatus::NoScans => "no scans".into(),
            PlanStatus::ScansLoading => "waiting for the scans".into(),
            PlanStatus::NoCurves => "no curves (Compute curves)".into(),
            PlanStatus::CurvesRunning => "waiting for the curves".into(),
            PlanStatus::NoFrontier => "no frontier (see Messages)".into(),
            PlanStatus::FrontierRunning => "waiting for the frontier".into(),
            PlanStatus::NoAllocation(_) => "no allocation at this budget".into(),
            PlanStatus::Ready => "ready".into(),
        }
    }
}

/// Where the pruned detections of the current allocation are.
#[derive(Clone, Debug, PartialEq)]
pub enum PrunedStatus {
    /// No allocation yet.
    Waiting(PlanStatus),
    /// Shown.
    Shown,
    /// Being computed, or about to be once the budget rests.
    Updating,
    /// The forward for this allocation failed or was cancelled; a new budget retries.
    NotComputed,
}

/// What a button asks for; [`State::unavailable`] says why it cannot be done yet, so the
/// button is disabled with the reason on hover instead of failing when pressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    ComputeCurves,
    MeasureCurves,
    Evaluate,
    Export,
    /// Opening a config: it is read with the weights, so they come first.
    OpenConfig,
}

/// Per-layer FLOPs as the panels show them (see [`State::layer_flops`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerFlops {
    /// In [`LoadedModel::layers`] order; `None` where they depend on scans and none is open.
    pub flops: Vec<Option<f64>>,
    /// Where they come from, for the model panel.
    pub source: String,
}

impl LayerFlops {
    /// The known FLOPs' sum.
    pub fn total(&self) -> f64 {
        self.flops.iter().flatten().sum()
    }

    /// Layer `i`'s share of the total, as the layer table prints it.
    pub fn share(&self, i: usize) -> String {
        let total = self.total();
        match self.flops.get(i).copied().flatten() {
            None => "-".into(),
            Some(_) if total <= 0.0 => "-".into(),
            Some(f) => {
                let pct = 100.0 * f / total;
                if pct > 0.0 && pct < 0.05 {
                    "<0.1%".into()
                } else {
                    format!("{pct:.1}%")
                }
            }
        }
    }
}

/// The whole app state (without egui or GPU handles, so tests can drive it).
pub struct State {
    pub settings: Settings,
    pub jobs: Jobs<Tagged>,
    generation: u64,
    pub model: Option<Arc<LoadedModel>>,
    pub scans: Vec<ScanEntry>,
    pub selected_scan: usize,
    pub curves: Option<Arc<Curves>>,
    pub orders: Option<Arc<Vec<Vec<u32>>>>,
    /// Scan ids the curves were computed on (curves are stale when the scans change).
    pub curves_scans: Vec<String>,
    pub planner: Option<Arc<Planner>>,
    pub current: Option<Current>,
    pub pruned: Option<PrunedDetections>,
    /// What the pruned forward in flight shows.
    pruned_target: Option<PrunedTarget>,
    /// The last full recovery, for the allocation it was run at.
    pub recovered: Option<Arc<RecoveredModel>>,
    last_change: Instant,
    pub eval_points: Vec<EvalPoint>,
    /// Where curves and evaluations are kept across restarts (`None`: nowhere, as in tests).
    pub cache: Option<Arc<Cache>>,
    /// The cache entry of the current curves.
    cache_entry: Option<Arc<Entry>>,
    /// The last folder or simulator set evaluated on, as the model reads it.
    eval_set: Option<(EvalSource, Arc<EvalSet>)>,
    pub messages: Vec<Message>,
    /// [`scan_labels`] of the scans.
    labels: Vec<String>,
    /// Scans given with a model that did not load (or before any model): they load with the
    /// next model opened.
    pub pending_scans: Vec<PathBuf>,
    /// What the path field is asked for: shown after a dialog failed, or from the File menu.
    pub path_prompt: Option<Pick>,
    /// What the curves warn of (near-empty calibration scans), for the budget panel.
    pub curves_warnings: Vec<String>,
    file_dialog: FileDialog,
}

impl State {
    pub fn new(settings: Settings, wake: Arc<dyn Fn() + Send + Sync>) -> State {
        State {
            settings,
            jobs: Jobs::new(wake),
            generation: 0,
            model: None,
            scans: Vec::new(),
            selected_scan: 0,
            curves: None,
            orders: None,
            curves_scans: Vec::new(),
            planner: None,
            current: None,
            pruned: None,
            pruned_target: None,
            recovered: None,
            last_change: Instant::now(),
            eval_points: Vec::new(),
            cache: None,
            cache_entry: None,
            eval_set: None,
            messages: Vec::new(),
            labels: Vec::new(),
            pending_scans: Vec::new(),
            path_prompt: None,
            curves_warnings: Vec::new(),
            file_dialog: Arc::new(super::dialogs::native),
        }
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.messages.push(Message {
            level: Level::Info,
            text: text.into(),
        });
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.messages.push(Message {
            level: Level::Error,
            text: text.into(),
        });
    }

    fn spawn(
        &mut self,
        kind: JobKind,
        title: impl Into<String>,
        body: impl FnOnce(&super::jobs::JobCtl) -> super::jobs::JobResult<Output> + Send + 'static,
    ) {
        let generation = Some(self.generation);
        self.jobs.spawn(kind, title, move |ctl| {
            body(ctl).map(|output| Tagged { generation, output })
        });
    }

    // ------------------------------------------------------------------------------------
    // opening

    /// Opens a model and its scans. What is open stays until the new model has loaded, so a
    /// bad file loses nothing; then it replaces everything (running jobs are cancelled).
    pub fn open(&mut self, req: OpenRequest) {
        let title = format!("load {}", req.weights.display());
        self.spawn(JobKind::LoadModel, title, move |ctl| {
            match work::load_model(&req, ctl) {
                Ok(m) => Ok(Output::Model(Box::new(m), req)),
                // The request comes back with the error: its scans must not vanish with it.
                Err(JobError::Failed(e)) => Ok(Output::ModelFailed(req, e)),
                Err(e) => Err(e),
            }
        });
    }

    /// A model did not load: say why, and keep the scans that came with it (those not open
    /// already) for the next model.
    fn model_failed(&mut self, req: OpenRequest, error: String) {
        self.error(format!("load {}: {error}", req.weights.display()));
        let open: Vec<&PathBuf> = self.scans.iter().map(|s| &s.path).collect();
        let waiting: Vec<PathBuf> = req
            .scans
            .into_iter()
            .filter(|p| !open.contains(&p))
            .collect();
        if !waiting.is_empty() {
            self.error(format!(
                "the {} scan path(s) given with it wait for a model: open one (File > Open \
                 model) and they load with it",
                waiting.len()
            ));
            self.hold_scans(waiting);
        }
    }

    /// Keeps scans for the next model (no duplicates).
    fn hold_scans(&mut self, paths: Vec<PathBuf>) {
        for p in paths {
            if !self.pending_scans.contains(&p) {
                self.pending_scans.push(p);
            }
        }
    }

    /// Replaces what is open by a freshly loaded model, then loads the request's scans.
    fn replace_model(&mut self, model: LoadedModel, req: OpenRequest) {
        self.jobs.cancel_all();
        self.generation += 1;
        self.model = Some(Arc::new(model));
        self.scans.clear();
        self.selected_scan = 0;
        self.clear_curves();
        self.eval_points.clear();
        self.eval_set = None;
        let mut scans = req.scans.clone();
        scans.extend(std::mem::take(&mut self.pending_scans));
        if !scans.is_empty() {
            self.add_scans(scans);
        }
        self.settings.open = Some(req);
    }

    fn clear_curves(&mut self) {
        self.cache_entry = None;
        self.curves = None;
        self.curves_warnings.clear();
        self.orders = None;
        self.curves_scans.clear();
        self.planner = None;
        self.current = None;
        self.pruned = None;
        self.pruned_target = None;
        self.recovered = None;
    }

    /// Adds scans (files or folders) to the calibration set; without a model they wait for
    /// one.
    pub fn add_scans(&mut self, paths: Vec<PathBuf>) {
        let Some(model) = &self.model else {
            self.info(format!(
                "no model is open: the {} scan path(s) load with the next model opened (File > \
                 Open model)",
                paths.len()
            ));
            self.hold_scans(paths);
            return;
        };
        let det = model.det.clone();
        let title = format!("scans: read + dense forward ({} path(s))", paths.len());
        self.spawn(JobKind::LoadScans, title, move |ctl| {
            let (scans, errors) = ctl.with_control(|c| scans::load_scans(&det, &paths, c))?;
            Ok(Output::Scans { scans, errors })
        });
    }

    pub fn remove_scan(&mut self, index: usize) {
        if index < self.scans.len() {
            self.scans.remove(index);
            self.selected_scan = self.selected_scan.min(self.scans.len().saturating_sub(1));
            self.scans_changed();
        }
    }

    fn remember_scans(&mut self) {
        if let Some(open) = &mut self.settings.open {
            open.scans = self.scans.iter().map(|s| s.path.clone()).collect();
        }
    }

    /// FLOPs of the layer table at the scans' mean cost (PFN rows, sparse-conv pairs).
    fn refresh_layer_flops(&mut self) {
        let Some(m) = &self.model else { return };
        let mean = pruneview_core::detect::ScanCost::mean(self.scans.iter().map(|s| &s.cost));
        let mut m2 = LoadedModel::clone(m);
        m2.layers = pruneview_core::prune::probe::layer_table(&m.det, &mean);
        self.model = Some(Arc::new(m2));
    }

    // ------------------------------------------------------------------------------------
    // curves and planning

    /// Whether the curves were computed on other scans than the current ones.
    pub fn curves_stale(&self) -> bool {
        self.curves.is_some() && self.curves_scans != self.scan_ids()
    }

    /// The scans' identities ([`scan_key`]: two `000000.bin` from different folders differ).
    fn scan_ids(&self) -> Vec<String> {
        self.scans.iter().map(scan_key).collect()
    }

    /// The name the UI gives scan `i`: its file name, with its folders when another scan
    /// shares that name (see [`scan_labels`]).
    pub fn scan_label(&self, i: usize) -> String {
        self.scan_labels().into_iter().nth(i).unwrap_or_default()
    }

    /// [`Self::scan_label`] of every scan (kept from the last change of the scans).
    pub fn scan_labels(&self) -> Vec<String> {
        if self.labels.len() == self.scans.len() {
            return self.labels.clone();
        }
        scan_labels(
            &self
                .scans
                .iter()
                .map(|s| s.path.clone())
                .collect::<Vec<_>>(),
        )
    }

    /// The scans changed: their labels, the path list that reopens them, the layer FLOPs.
    fn scans_changed(&mut self) {
        self.labels = scan_labels(
            &self
                .scans
                .iter()
                .map(|s| s.path.clone())
                .collect::<Vec<_>>(),
        );
        self.remember_scans();
        self.refresh_layer_flops();
    }

    fn calib_scans(&self) -> Vec<CalibScan> {
        self.scans.iter().map(ScanEntry::calibration).collect()
    }

    /// Starts the predicted curves on the current scans, or reads them from the cache when
    /// they were computed for the same files before.
    pub fn compute_curves(&mut self) {
        self.start_curves(true);
    }

    /// Computes the curves afresh (replacing what the cache holds).
    pub fn recompute_curves(&mut self) {
        self.start_curves(false);
    }

    fn start_curves(&mut self, read_cache: bool) {
        let Some(model) = &self.model else {
            self.error("open a model first");
            return;
        };
        if self.scans.is_empty() {
            self.error("add calibration scans first");
            return;
        }
        let model = model.clone();
        let scans = self.calib_scans();
        let cache = self.cache.clone().map(|cache| CurvesCache {
            cache,
            files: self.scans.iter().map(|s| s.path.clone()).collect(),
            read: read_cache,
        });
        let keys = self.scan_ids();
        let (probes, weighting) = (self.settings.probes, self.settings.weighting);
        let title = format!("curves: {} scans x {probes} probes", scans.len());
        self.spawn(JobKind::Curves, title, move |ctl| {
            let mut r = work::compute_curves(&model, &scans, probes, weighting, cache, ctl)?;
            // Staleness is judged by path: the curves file keeps the scans' file names.
            r.scan_ids = keys;
            Ok(Output::Curves(Box::new(r)))
        });
    }

    /// Starts the measured curves (every layer, 9 levels); they are cached with the curves.
    pub fn measure_curves(&mut self) {
        let (Some(model), Some(curves), Some(orders)) = (&self.model, &self.curves, &self.orders)
        else {
            self.error("compute the curves first");
            return;
        };
        let (det, curves, orders) = (model.det.clone(), curves.clone(), orders.clone());
        let scans = self.calib_scans();
        let entry = self.cache_entry.clone();
        let levels: Vec<f64> = (1..10).map(|k| k as f64 / 10.0).collect();
        self.spawn(JobKind::MeasuredCurves, "measured curves", move |ctl| {
            let m = ctl.with_control(|c| {
                pruneview_core::session::curves::measured_curves(
                    &det, &scans, &curves, &orders, &levels, c,
                )
            })?;
            let note = entry.and_then(|e| {
                e.save_curves(&work::with_measured(&curves, m.clone()))
                    .err()
                    .map(|why| format!("measured curves not cached: {why}"))
            });
            Ok(Output::Measured(m, note))
        });
    }

    /// Rebuilds the frontier for the current lambdas, constraints and budget kind.
    pub fn replan(&mut self) {
        let (Some(model), Some(curves)) = (&self.model, &self.curves) else {
            return;
        };
        let (curves, weights) = (curves.clone(), model.weights.clone());
        let lambdas = self.settings.lambdas;
        let kind = self.settings.budget_kind;
        let constraints: HashMap<String, Constraint> = self
            .settings
            .constraints
            .iter()
            .filter(|(n, c)| **c != Constraint::default() && curves.layer(n).is_some())
            .map(|(n, c)| (n.clone(), *c))
            .collect();
        self.spawn(JobKind::Frontier, "frontier", move |ctl| {
            let p = ctl
                .with_control(|c| plan::plan(&curves, &weights, lambdas, &constraints, kind, c))?;
            Ok(Output::Planner(Box::new(p)))
        });
    }

    pub fn is_planning(&self) -> bool {
        self.jobs.is_running(JobKind::Frontier)
    }

    /// Why `action` cannot be done now (`None`: it can).
    pub fn unavailable(&self, action: Action) -> Option<String> {
        let no_model = || "open a model first (File > Open model)".to_string();
        match action {
            Action::ComputeCurves if self.model.is_none() => Some(no_model()),
            Action::ComputeCurves if self.scans.is_empty() => {
                Some("add calibration scans first: the curves are computed on them".into())
            }
            Action::MeasureCurves if self.curves.is_none() => {
                Some("compute the curves first: they are measured at their sparsities".into())
            }
            Action::Evaluate | Action::Export if self.current_dp().is_err() => {
                Some(match self.plan_status() {
                    PlanStatus::Ready => "no allocation at this budget".into(),
                    p => p.explain(),
                })
            }
            Action::Evaluate if !self.scans.iter().any(|s| s.kitti.is_some()) => Some(
                "no labelled scans: evaluation needs scans in a KITTI layout (velodyne/ with \
                 label_2/ and calib/ beside it)"
                    .into(),
            ),
            Action::OpenConfig
                if self
                    .settings
                    .open
                    .as_ref()
                    .is_none_or(|o| o.weights.as_os_str().is_empty()) =>
            {
                Some("open the weights (.safetensors) first: the config is read with them".into())
            }
            _ => None,
        }
    }

    /// Per-layer FLOPs for the model panel and the layer table, from one source so that
    /// they agree with the budget panel and report.csv: the curves' (the mean over the
    /// scans they were computed on, what the allocation counts) once there are curves, else
    /// the mean over the open scans. `None` without a model.
    pub fn layer_flops(&self) -> Option<LayerFlops> {
        let m = self.model.as_ref()?;
        if let Some(c) = &self.curves {
            return Some(LayerFlops {
                flops: m
                    .layers
                    .iter()
                    .map(|l| Some(c.layer(&l.name).map_or(l.flops, |cl| cl.flops)))
                    .collect(),
                source: format!(
                    "mean of the {} scans the curves were computed on",
                    c.calibration.scans
                ),
            });
        }
        if self.scans.is_empty() {
            // The VFE's and the sparse convs' cost is a scan's: unknown until one is open.
            return Some(LayerFlops {
                flops: m
                    .layers
                    .iter()
                    .map(|l| (l.flops > 0.0).then_some(l.flops))
                    .collect(),
                source: "no scans yet: layers whose cost depends on the scan show -".into(),
            });
        }
        Some(LayerFlops {
            flops: m.layers.iter().map(|l| Some(l.flops)).collect(),
            source: format!("mean of the {} open scans", self.scans.len()),
        })
    }

    /// How far the pipeline has got towards an allocation (see [`PlanStatus`]).
    pub fn plan_status(&self) -> PlanStatus {
        let running = |k| self.jobs.is_running(k);
        if self.model.is_none() {
            return if running(JobKind::LoadModel) {
                PlanStatus::ModelLoading
            } else {
                PlanStatus::NoModel
            };
        }
        if self.curves.is_none() {
            return if running(JobKind::Curves) {
                PlanStatus::CurvesRunning
            } else if running(JobKind::LoadScans) {
                PlanStatus::ScansLoading
            } else if self.scans.is_empty() {
                PlanStatus::NoScans
            } else {
                PlanStatus::NoCurves
            };
        }
        let Some(cur) = self.current.as_ref().filter(|_| self.planner.is_some()) else {
            return if running(JobKind::Frontier) || self.planner.is_some() {
                PlanStatus::FrontierRunning
            } else {
                PlanStatus::NoFrontier
            };
        };
        match &cur.dp {
            Ok(_) => PlanStatus::Ready,
            Err(e) => PlanStatus::NoAllocation(e.clone()),
        }
    }

    /// Where the pruned detections of the current allocation are (see [`PrunedStatus`]).
    pub fn pruned_status(&self) -> PrunedStatus {
        match self.plan_status() {
            PlanStatus::Ready => {}
            p => return PrunedStatus::Waiting(p),
        }
        if self.pruned_is_current() {
            PrunedStatus::Shown
        } else if self.jobs.is_running(JobKind::PrunedForward)
            || self.pruned_target != self.pruned_target()
        {
            PrunedStatus::Updating
        } else {
            PrunedStatus::NotComputed
        }
    }

    // ------------------------------------------------------------------------------------
    // per frame

    /// Applies finished jobs, answers the budget from the planner and starts the pruned
    /// forward once the budget has settled. Cheap: called on every frame.
    pub fn tick(&mut self) {
        for f in self.jobs.poll() {
            // A failed or cancelled job is not retried (a pruned forward for the same target
            // would fail again, or undo the cancel); a new target starts a new one.
            match f.result {
                Ok(t) if t.generation.is_none_or(|g| g == self.generation) => {
                    self.apply(t.output, f.elapsed)
                }
                Ok(_) => {}
                Err(JobError::Cancelled) => {}
                Err(JobError::Failed(e)) => self.error(format!("{}: {e}", f.title)),
            }
        }
        self.update_current();
        self.schedule_pruned();
    }

    fn apply(&mut self, output: Output, elapsed: Duration) {
        match output {
            Output::Model(m, req) => self.replace_model(*m, req),
            Output::Scans { scans, errors } => {
                for e in errors {
                    self.error(e);
                }
                for s in scans.iter().filter(|s| s.non_finite_dropped > 0) {
                    self.info(scans::non_finite_warning(&s.path, s.non_finite_dropped));
                }
                let known: Vec<PathBuf> = self.scans.iter().map(|s| s.path.clone()).collect();
                self.scans
                    .extend(scans.into_iter().filter(|s| !known.contains(&s.path)));
                self.scans_changed();
                if self.settings.auto_curves && self.curves.is_none() && !self.scans.is_empty() {
                    self.compute_curves();
                }
            }
            Output::Curves(r) => {
                let CurvesResult {
                    predicted,
                    scan_ids,
                    entry,
                    from_cache,
                    evaluations,
                    notes,
                } = *r;
                let how = if from_cache {
                    "from the cache".to_owned()
                } else {
                    format!("in {:.1} s", elapsed.as_secs_f64())
                };
                self.info(format!(
                    "curves for {} layers from {} scans {how}",
                    predicted.curves.layers.len(),
                    scan_ids.len(),
                ));
                for n in notes {
                    self.info(n);
                }
                if !evaluations.is_empty() {
                    self.info(format!(
                        "{} evaluation(s) from the cache",
                        evaluations.len()
                    ));
                }
                for p in evaluations {
                    self.add_eval_point(p);
                }
                self.cache_entry = entry;
                self.curves = Some(Arc::new(predicted.curves));
                self.orders = Some(Arc::new(predicted.orders));
                let counts: Vec<(String, usize)> = self
                    .scans
                    .iter()
                    .filter(|s| scan_ids.contains(&scan_key(s)))
                    .map(|s| (s.id.clone(), s.points.len() / s.num_features.max(1)))
                    .collect();
                self.curves_warnings = scans::thin_calibration(&counts).into_iter().collect();
                for w in self.curves_warnings.clone() {
                    self.error(format!("warning: {w}"));
                }
                self.curves_scans = scan_ids;
                self.planner = None;
                self.replan();
            }
            Output::Planner(p) => {
                self.planner = Some(Arc::new(*p));
                self.current = None;
            }
            Output::Pruned(p) => {
                // A stale result must not clear the target of the job that replaced it.
                if self.pruned_target.as_ref().is_some_and(|t| t.shows(&p)) {
                    self.pruned_target = None;
                }
                self.pruned = Some(p);
            }
            Output::Measured(m, note) => {
                if let Some(c) = &self.curves {
                    self.curves = Some(Arc::new(work::with_measured(c, m)));
                    self.info(format!("measured curves in {:.0} s", elapsed.as_secs_f64()));
                }
                if let Some(n) = note {
                    self.info(n);
                }
            }
            Output::Eval {
                point: p,
                set,
                note,
            } => {
                if let Some(n) = note {
                    self.info(n);
                }
                let a = &p.accuracy;
                self.info(format!(
                    "{} at {:.0}% kept, recovery {}: mean moderate AP_BEV {:.2} (dense {:.2}) on {} frames of {}",
                    p.method,
                    p.keep * 100.0,
                    p.recovery.label(),
                    a.pruned.mean_bev,
                    a.dense.mean_bev,
                    a.frames,
                    p.source
                ));
                if let Some(set) = set {
                    self.eval_set = Some((p.source.clone(), set));
                }
                self.add_eval_point(p);
            }
            Output::Recovered(r) => {
                let last = r.report.results.last();
                self.info(format!(
                    "recovered ({}) in {:.0} s: calibration D {}",
                    r.report.stages,
                    elapsed.as_secs_f64(),
                    last.map_or("-".into(), |s| format!(
                        "{:.3e}",
                        self.settings.lambdas.combine(s.confidence, s.locality)
                    ))
                ));
                for n in &r.report.notes {
                    self.info(format!("recovery: {n}"));
                }
                self.recovered = Some(Arc::new(*r));
            }
            Output::Exported(files, warning) => {
                if let Some(w) = warning {
                    self.error(w);
                }
                let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                self.info(format!("wrote {}", names.join(", ")));
            }
            Output::Picked(pick, paths) => self.picked(pick, paths),
            Output::DialogFailed(pick, why) => {
                self.error(format!(
                    "the file dialog could not open ({why}): type the path instead"
                ));
                self.path_prompt = Some(pick);
            }
            Output::ModelFailed(req, e) => self.model_failed(req, e),
        }
    }

    fn picked(&mut self, pick: Pick, paths: Vec<PathBuf>) {
        let Some(first) = paths.first().cloned() else {
            return;
        };
        match pick {
            Pick::Model => self.open_files(Some(first), None, Vec::new()),
            Pick::Config => self.open_files(None, Some(first), Vec::new()),
            Pick::Scans | Pick::ScanFolder => self.add_scans(paths),
            Pick::ExportDir => self.settings.export.dir = first,
            Pick::EvalFolder => self.set_eval_source(EvalSource::Folder(first)),
        }
    }

    /// Opens the model again with new weights and / or a new config, and with `scans`: the
    /// given ones and those waiting for a model, or else the ones open now.
    fn open_files(
        &mut self,
        weights: Option<PathBuf>,
        config: Option<PathBuf>,
        scans: Vec<PathBuf>,
    ) {
        let mut req = self.settings.open.clone().unwrap_or_default();
        if let Some(w) = weights {
            req.weights = w;
        }
        if config.is_some() {
            req.config = config;
        }
        if req.weights.as_os_str().is_empty() {
            self.error("pick the weights (.safetensors) first: the config is read with them");
            self.hold_scans(scans);
            return;
        }
        let mut given = std::mem::take(&mut self.pending_scans);
        for p in scans {
            if !given.contains(&p) {
                given.push(p);
            }
        }
        if !given.is_empty() {
            req.scans = given;
        }
        self.open(req);
    }

    /// Dropped files: weights and a YAML open one model together (with the dropped scans,
    /// if any); scans and folders alone are added to the open model.
    pub fn dropped(&mut self, paths: Vec<PathBuf>) {
        let ext = |p: &PathBuf| {
            p.extension()
                .map(|e| e.to_string_lossy().to_lowercase())
                .unwrap_or_default()
        };
        let (mut weights, mut config, mut scans) = (None, None, Vec::new());
        for p in paths {
            match ext(&p).as_str() {
                "safetensors" if weights.is_none() => weights = Some(p),
                "yaml" | "yml" if config.is_none() => config = Some(p),
                "safetensors" | "yaml" | "yml" => self.error(format!(
                    "{}: not opened: one model (weights and config) at a time",
                    p.display()
                )),
                _ if p.is_dir() || is_scan_file(&p) => scans.push(p),
                _ => self.error(format!(
                    "{}: not a model (.safetensors), config (.yaml) or scan (.bin, .pcd)",
                    p.display()
                )),
            }
        }
        if weights.is_some() || config.is_some() {
            self.open_files(weights, config, scans);
        } else if !scans.is_empty() {
            self.add_scans(scans);
        }
    }

    /// Opens a file dialog on a job thread (the native one blocks until it closes).
    pub fn pick(&mut self, pick: Pick) {
        let dialog = self.file_dialog.clone();
        self.jobs.spawn(JobKind::Dialog, "file dialog", move |_| {
            let output = match dialog(pick) {
                Ok(paths) => Output::Picked(pick, paths),
                Err(why) => Output::DialogFailed(pick, why),
            };
            Ok(Tagged {
                generation: None,
                output,
            })
        });
    }

    /// Writes a picture (RGBA rows) to `path` as a PNG in a job; says "wrote" when done.
    pub fn write_picture(&mut self, path: PathBuf, width: u32, height: u32, rgba: Vec<u8>) {
        self.jobs
            .spawn(JobKind::Export, "save screenshot", move |_| {
                work::write_png(&path, width, height, rgba)?;
                Ok(Tagged {
                    generation: None,
                    output: Output::Exported(vec![path], None),
                })
            });
    }

    /// Replaces the native file dialog (tests use a stand-in).
    pub fn set_file_dialog(&mut self, dialog: FileDialog) {
        self.file_dialog = dialog;
    }

    /// A path typed for `pick` (the path field): used as a dialog's choice once it is one
    /// (true), else the error says why not (false, the field stays).
    pub fn typed_path(&mut self, pick: Pick, text: &str) -> bool {
        let Some(path) = super::dialogs::typed_path(text) else {
            self.error("type a path first");
            return false;
        };
        let problem = match pick {
            Pick::ExportDir if path.is_file() => Some("is a file, not a folder"),
            Pick::ExportDir => None,
            _ if !path.exists() => Some("no such file or folder"),
            Pick::Model | Pick::Config if path.is_dir() => Some("is a folder, not a file"),
            Pick::ScanFolder if !path.is_dir() => Some("is not a folder"),
            _ => None,
        };
        if let Some(problem) = problem {
            self.error(format!("{}: {problem}", path.display()));
            return false;
        }
        self.path_prompt = None;
        self.picked(pick, vec![path]);
        true
    }

    /// The budget, lambdas or constraints changed.
    pub fn budget_changed(&mut self) {
        self.last_change = Instant::now();
        self.current = None;
    }

    /// Clears every layer's lock and sparsity bounds, and rebuilds the frontier.
    pub fn reset_constraints(&mut self) {
        if !self.settings.constraints.is_empty() {
            self.settings.constraints.clear();
            self.planning_inputs_changed();
        }
    }

    /// The budget slider was let go: the pruned forward starts at once instead of after
    /// [`SETTLE`] (which is for a budget that moves by keys or a held pointer).
    pub fn budget_released(&mut self) {
        self.last_change = Instant::now()
            .checked_sub(SETTLE)
            .unwrap_or(self.last_change);
        self.update_current();
        self.schedule_pruned();
    }

    pub fn planning_inputs_changed(&mut self) {
        self.budget_changed();
        self.replan();
    }

    fn update_current(&mut self) {
        let Some(p) = &self.planner else { return };
        let keep = self.settings.keep;
        let compare = self.settings.compare_method();
        if let Some(c) = &self.current
            && c.keep == keep
            && c.kind == p.kind
            && c.compare.as_ref().map(|x| x.0) == compare
        {
            return;
        }
        let dp = p.solve(Method::Dp, keep);
        self.current = Some(Current {
            keep,
            kind: p.kind,
            warnings: dp.as_ref().map_or(Vec::new(), |s| p.problem.warnings(s)),
            dp,
            compare: compare.map(|m| (m, p.solve(m, keep))),
        });
    }

    pub fn selected(&self) -> Option<&ScanEntry> {
        self.scans.get(self.selected_scan)
    }

    /// The selected scan's dense and pruned detections compared at the score threshold (the
    /// boxes shown), when there are pruned detections of that scan.
    pub fn detection_diff(&self) -> Option<DetectionDiff> {
        let scan = self.selected()?;
        let pruned = self
            .pruned
            .as_ref()
            .filter(|p| p.scan_id == scan_key(scan))?;
        Some(compare::match_detections(
            &scan.dense,
            &pruned.detections,
            self.settings.score_threshold,
            compare::MATCH_IOU,
        ))
    }

    /// The scan and allocation the pruned detections should show, when there are both.
    fn pruned_goal(&self) -> Option<(&ScanEntry, &Solution)> {
        let sol = self.current.as_ref()?.dp.as_ref().ok()?;
        Some((self.selected()?, sol))
    }

    /// The full recovery of `sparsity`, when it has been run.
    pub fn recovered_for(&self, sparsity: &[f64]) -> Option<&Arc<RecoveredModel>> {
        self.recovered.as_ref().filter(|r| r.sparsity == sparsity)
    }

    /// The recovery the pruned model of `sparsity` gets: the chosen one, except that a full
    /// recovery not yet run for this allocation shows the statistics repair meanwhile.
    pub fn effective_recovery(&self, sparsity: &[f64]) -> Recovery {
        match self.settings.recovery {
            Recovery::Full if self.recovered_for(sparsity).is_none() => Recovery::Statistics,
            r => r,
        }
    }

    /// The pruned model of `sparsity` as it is recovered; statistics on the first
    /// `max_scans` calibration scans.
    fn pruned_model(&self, sparsity: &[f64], max_scans: usize) -> PrunedModel {
        match (self.settings.recovery, self.recovered_for(sparsity)) {
            (Recovery::None, _) => PrunedModel::Masked,
            (Recovery::Full, Some(r)) => PrunedModel::Recovered(r.clone()),
            _ => PrunedModel::Statistics(Arc::new(
                self.scans
                    .iter()
                    .take(max_scans)
                    .map(ScanEntry::calibration)
                    .collect(),
            )),
        }
    }

    fn pruned_target(&self) -> Option<PrunedTarget> {
        let (scan, sol) = self.pruned_goal()?;
        Some(PrunedTarget {
            scan_id: scan_key(scan),
            recovery: self.effective_recovery(&sol.sparsity),
            sparsity: sol.sparsity.clone(),
        })
    }

    /// Whether the shown pruned detections are those of the current allocation, scan and
    /// recovery.
    pub fn pruned_is_current(&self) -> bool {
        match (self.pruned_target(), &self.pruned) {
            (Some(t), Some(p)) => t.shows(p),
            _ => false,
        }
    }

    /// Starts the pruned forward on the selected scan once the budget has been still for
    /// [`SETTLE`]; a newer target cancels the stale job (jobs of a kind supersede).
    fn schedule_pruned(&mut self) {
        let (Some(model), Some(orders), Some(target)) =
            (&self.model, &self.orders, self.pruned_target())
        else {
            return;
        };
        if self.pruned_is_current()
            || self.pruned_target.as_ref() == Some(&target)
            || self.last_change.elapsed() < SETTLE
        {
            return;
        }
        let Some(scan) = self.selected() else { return };
        let (det, orders, points) = (model.det.clone(), orders.clone(), scan.points.clone());
        let pruned = self.pruned_model(&target.sparsity, PREVIEW_SCANS);
        let (scan_id, sparsity) = (target.scan_id.clone(), target.sparsity.clone());
        self.pruned_target = Some(target);
        self.spawn(JobKind::PrunedForward, "pruned detections", move |ctl| {
            let r =
                work::pruned_detections(&det, &orders, sparsity, &pruned, scan_id, &points, ctl)?;
            Ok(Output::Pruned(r))
        });
    }

    /// Time until the pending pruned forward starts (the UI asks for a repaint then).
    pub fn settle_remaining(&self) -> Option<Duration> {
        self.pruned_goal()?;
        (!self.pruned_is_current() && self.pruned_target.is_none())
            .then(|| SETTLE.saturating_sub(self.last_change.elapsed()))
    }

    /// The recovery choice changed: the shown detections follow at once.
    pub fn recovery_changed(&mut self) {
        self.pruned_target = None;
    }

    /// The current DP allocation, or why there is none.
    fn current_dp(&self) -> Result<(f64, &Solution), &'static str> {
        let cur = self.current.as_ref().ok_or("compute the curves first")?;
        let sol = cur
            .dp
            .as_ref()
            .map_err(|_| "no allocation at this budget")?;
        Ok((cur.keep, sol))
    }

    /// Starts a full recovery (statistics, reconstruction, distillation) of the current DP
    /// allocation on all calibration scans: a background job with progress and cancel.
    pub fn recover(&mut self) {
        let (Some(model), Some(orders), Some(curves)) = (&self.model, &self.orders, &self.curves)
        else {
            self.error("compute the curves first");
            return;
        };
        let sparsity = match self.current_dp() {
            Ok((_, sol)) => sol.sparsity.clone(),
            Err(e) => return self.error(e),
        };
        let settings = RecoverSettings {
            weighting: curves.calibration.distortion,
            normalization: Some(curves.calibration.normalization.clone()),
            distill: pruneview_core::prune::recover::DistillSettings {
                lambdas: self.settings.lambdas,
                steps: self.settings.distill_steps,
                ..Default::default()
            },
            ..RecoverSettings::default()
        };
        let (det, orders, scans) = (model.det.clone(), orders.clone(), self.calib_scans());
        let title = format!(
            "recover: {} scans, all stages, {} distillation steps",
            scans.len(),
            self.settings.distill_steps
        );
        self.spawn(JobKind::Recover, title, move |ctl| {
            let r = work::recover(&det, &orders, sparsity, &scans, &settings, ctl)?;
            Ok(Output::Recovered(Box::new(r)))
        });
    }

    pub fn is_recovering(&self) -> bool {
        self.jobs.is_running(JobKind::Recover)
    }

    /// Replaces an earlier point of the same set, method, recovery and budget.
    fn add_eval_point(&mut self, p: EvalPoint) {
        self.eval_points.retain(|q| {
            !(q.source == p.source
                && q.method == p.method
                && q.recovery == p.recovery
                && (q.keep - p.keep).abs() < 1e-9)
        });
        self.eval_points.push(p);
    }

    /// Chooses what Evaluate runs on; a folder chosen again is read again (it may have
    /// changed).
    pub fn set_eval_source(&mut self, source: EvalSource) {
        if matches!(source, EvalSource::Folder(_)) {
            self.eval_set = None;
        }
        self.settings.eval_source = source;
    }

    /// The evaluations of the chosen set, in the order they were made.
    pub fn eval_points_of_source(&self) -> Vec<&EvalPoint> {
        let source = &self.settings.eval_source;
        self.eval_points
            .iter()
            .filter(|p| p.source == *source)
            .collect()
    }

    /// Calibration scans that can be evaluated (a KITTI layout with labels).
    pub fn labelled_calibration_scans(&self) -> Vec<(PathBuf, String)> {
        self.scans.iter().filter_map(|s| s.kitti.clone()).collect()
    }

    pub fn is_evaluating(&self) -> bool {
        self.jobs.is_running(JobKind::Eval)
    }

    /// KITTI AP of the dense and the pruned model at the current budget and recovery, on
    /// the chosen set: a background job (reading or generating the set the first time).
    pub fn evaluate(&mut self) {
        let (Some(model), Some(orders)) = (&self.model, &self.orders) else {
            self.error("compute the curves first");
            return;
        };
        let (keep, sparsity) = match self.current_dp() {
            Ok((keep, sol)) => (keep, sol.sparsity.clone()),
            Err(e) => return self.error(e),
        };
        let source = self.settings.eval_source.clone();
        let frames = match (&source, &self.eval_set) {
            (EvalSource::Calibration, _) => {
                EvalFrames::Calibration(self.labelled_calibration_scans())
            }
            (s, Some((loaded, set))) if s == loaded => EvalFrames::Loaded(set.clone()),
            (s, _) => EvalFrames::Load(s.clone()),
        };
        let pruned = self.pruned_model(&sparsity, usize::MAX);
        let (det, orders) = (model.det.clone(), orders.clone());
        let entry = self.cache_entry.clone();
        let title = format!("evaluate dense and pruned on {source}");
        self.spawn(JobKind::Eval, title, move |ctl| {
            let (point, set) = work::evaluate(
                &det,
                &orders,
                &sparsity,
                &pruned,
                Method::Dp,
                keep,
                source,
                frames,
                ctl,
            )?;
            let note = entry.and_then(|e| {
                e.save_evaluation(&point)
                    .err()
                    .map(|why| format!("evaluation not cached: {why}"))
            });
            Ok(Output::Eval { point, set, note })
        });
    }

    pub fn export(&mut self) {
        let (Some(model), Some(curves), Some(planner)) = (&self.model, &self.curves, &self.planner)
        else {
            self.error("nothing to export yet: compute the curves first");
            return;
        };
        let (keep, sol) = match self.current_dp() {
            Ok(x) => x,
            Err(e) => return self.error(e),
        };
        let alloc = planner.record(sol, Method::Dp, keep, curves);
        let pruned = self.pruned_model(&sol.sparsity, usize::MAX);
        let not_recovered =
            self.settings.recovery == Recovery::Full && self.recovered_for(&sol.sparsity).is_none();
        let (model, curves) = (model.clone(), curves.clone());
        if not_recovered {
            self.info(
                "full recovery has not run for this budget: exporting the statistics-repaired model (press Recover first for the fully recovered one)",
            );
        }
        let choice = self.settings.export.clone();
        self.spawn(JobKind::Export, "export", move |ctl| {
            let (files, warning) = work::export(&model, &curves, &alloc, &pruned, &choice, ctl)?;
            Ok(Output::Exported(files, warning))
        });
    }
}

/// A scan's identity in the app: its path (file names repeat across datasets).
pub fn scan_key(scan: &ScanEntry) -> String {
    scan.path.to_string_lossy().into_owned()
}

/// Names that tell `paths` apart: each file name, with as many of its folders as it takes
/// to differ from every other path's (`kitti/velodyne/000000.bin` and
/// `synthetic/velodyne/000000.bin`; a unique name stays bare).
pub fn scan_labels(paths: &[PathBuf]) -> Vec<String> {
    let parts: Vec<Vec<String>> = paths
        .iter()
        .map(|p| {
            p.components()
                .rev()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect()
        })
        .collect();
    let label = |j: usize, n: usize| {
        let p = &parts[j];
        let mut v: Vec<&str> = p[..n.min(p.len())].iter().map(String::as_str).collect();
        v.reverse();
        v.join("/")
    };
    (0..parts.len())
        .map(|i| {
            let mut n = 1;
            loop {
                let mine = label(i, n);
                let clash = (0..parts.len()).any(|j| j != i && label(j, n) == mine);
                if !clash || n >= parts[i].len() {
                    return mine;
                }
                n += 1;
            }
        })
        .collect()
}

/// What a pruned forward shows: a scan, an allocation and a recovery.
#[derive(Clone, Debug, PartialEq)]
struct PrunedTarget {
    scan_id: String,
    sparsity: Vec<f64>,
    recovery: Recovery,
}

impl PrunedTarget {
    fn shows(&self, p: &PrunedDetections) -> bool {
        p.scan_id == self.scan_id && p.sparsity == self.sparsity && p.recovery == self.recovery
    }
}

/// Where exports go unless the user picks a folder: an absolute path (`~/pruneview-export`),
/// so that the folder shown in the dialog is where the files land, whatever the working
/// directory the app was started from.
fn default_export_dir() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default()
        .join("pruneview-export")
}
