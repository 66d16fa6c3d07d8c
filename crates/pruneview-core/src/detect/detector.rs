//! A `Detector` = config + weights + the stages: points -> BEV map (pillars and a scatter, or
//! voxels, a sparse 3-D backbone and HeightCompression) -> 2-D backbone -> dense head -> raw
//! outputs -> boxes.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::model::config::{DetectorConfig, HeadConfig, VfeKind, load_config};
use crate::model::{Weights, WeightsError};
use crate::nn::Tensor;
use crate::pointcloud::voxelize::{self, Voxels};

use super::backbone::{self, BackboneTape, BevBackbone};
use super::heads::{AnchorHead, CenterHead, DenseHead, Detection, HeadError, HeadTape, RawOutputs};
use super::layers::{Unit, UnitError, UnitGrads, UnitKind};
use super::sparse_backbone::{
    SparseBackbone, SparseForward, SparseTape, height_compression, height_compression_backward,
    mean_vfe, voxel_sites,
};
use super::vfe::{PfnTape, PillarVfe, Pillars};

#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error(transparent)]
    Config(#[from] crate::model::config::ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{0}")]
    Nn(#[from] crate::nn::NnError),
    #[error("{path}: {message}")]
    Build { path: String, message: String },
    #[error("scan has {found} feature columns but the model needs {expected} ({names})")]
    Features {
        found: usize,
        expected: usize,
        names: String,
    },
}

/// Everything a forward pass produces before decoding.
#[derive(Clone, Debug)]
pub struct ForwardOutput {
    /// Static voxels (every model but the dynamic-pillar ones).
    pub voxels: Option<Voxels>,
    /// The PFN's output (pillar models; empty for voxel models).
    pub pillars: Pillars,
    /// Voxel models: MeanVFE's features and the 3-D backbone's sparse tensors.
    pub sparse: Option<SparseOutput>,
    /// `spatial_features_2d`, `[C, H, W]`.
    pub bev_features: Tensor,
    pub raw: RawOutputs,
}

/// What the 3-D part of a voxel model produced.
#[derive(Clone, Debug)]
pub struct SparseOutput {
    /// MeanVFE's `P x C` features, in voxel order.
    pub voxel_features: Vec<f32>,
    pub backbone: SparseForward,
}

impl ForwardOutput {
    /// What the BEV map was built from: pillars, or voxels for voxel models.
    pub fn bev_sources(&self) -> (usize, &'static str) {
        match (&self.sparse, &self.voxels) {
            (Some(_), Some(v)) => (v.len(), "voxels"),
            _ => (self.pillars.len(), "pillars"),
        }
    }
}

/// Points to the BEV map that the 2-D backbone reads.
#[derive(Clone, Debug)]
pub enum Encoder {
    /// `PillarVFE` / `DynPillarVFE`, then `PointPillarScatter`.
    Pillars(PillarVfe),
    /// `MeanVFE`, a sparse 3-D backbone, then `HeightCompression` of its `encoded` grid
    /// (`[D, H, W]`, kept here so that map sizes are known without a forward pass).
    Voxels {
        backbone: SparseBackbone,
        encoded_shape: [usize; 3],
    },
}

impl Encoder {
    /// The encoder's parameterised units: the PFN layers of pillar models, the sparse convs
    /// of voxel models.
    pub fn units(&self) -> Vec<&Unit> {
        match self {
            Encoder::Pillars(v) => v.layers.iter().collect(),
            Encoder::Voxels { backbone, .. } => backbone.units(),
        }
    }

    fn units_mut(&mut self) -> Vec<&mut Unit> {
        match self {
            Encoder::Pillars(v) => v.layers.iter_mut().collect(),
            Encoder::Voxels { backbone, .. } => backbone.units_mut(),
        }
    }
}

/// What the FLOPs of a scan's units depend on: the rows its PFN layers ran on and each sparse
/// conv's rulebook pair count (a mean when over several scans).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanCost {
    pub pfn_rows: f64,
    /// In [`Encoder::units`] order (voxel models).
    pub sparse_pairs: Vec<f64>,
}

impl ScanCost {
    /// The cost of the scan `out` is the forward pass of.
    pub fn of(out: &ForwardOutput) -> ScanCost {
        ScanCost {
            pfn_rows: out.pillars.point_rows as f64,
            sparse_pairs: out.sparse.as_ref().map_or_else(Vec::new, |s| {
                s.backbone.units.iter().map(|u| u.pairs as f64).collect()
            }),
        }
    }

    /// The mean over `costs` (all of one model; the default when empty).
    pub fn mean<'a>(costs: impl IntoIterator<Item = &'a ScanCost>) -> ScanCost {
        let mut sum = ScanCost::default();
        let mut n = 0usize;
        for c in costs {
            sum.pfn_rows += c.pfn_rows;
            if sum.sparse_pairs.len() < c.sparse_pairs.len() {
                sum.sparse_pairs.resize(c.sparse_pairs.len(), 0.0);
            }
            for (s, p) in sum.sparse_pairs.iter_mut().zip(&c.sparse_pairs) {
                *s += p;
            }
            n += 1;
        }
        if n > 0 {
            sum.pfn_rows /= n as f64;
            for s in &mut sum.sparse_pairs {
                *s /= n as f64;
            }
        }
        sum
    }
}

/// What a backward pass needs from the forward pass, per stage.
#[derive(Debug, Default)]
struct Tape {
    pfn: PfnTape,
    sparse: SparseTape,
    backbone: BackboneTape,
    head: HeadTape,
}

/// A forward pass recorded for [`Detector::backward`].
#[derive(Debug)]
pub struct TapedForward {
    pub out: ForwardOutput,
    tape: Tape,
}

impl TapedForward {
    /// A voxel model's sparse conv `k` (in [`Encoder::units`] order): its input features and
    /// the rulebook it ran with.
    pub fn sparse_unit_input(&self, k: usize) -> Option<(&[f32], &crate::nn::sparse::Rulebook)> {
        self.tape.sparse.unit_input(k)
    }

    /// The input of every unit of `det` (the detector that recorded this pass), in
    /// [`Detector::units`] order: `rows x in` for PFN layers, `[C, H, W]` maps otherwise.
    /// What layer-wise recovery fits each unit to.
    pub fn unit_inputs<'a>(&'a self, det: &Detector) -> Result<Vec<&'a Tensor>, DetectorError> {
        let missing = || DetectorError::Build {
            path: det.config.source.display().to_string(),
            message: "the taped forward pass was not recorded by this detector".into(),
        };
        if let Encoder::Voxels { .. } = det.encoder {
            return Err(DetectorError::Build {
                path: det.config.source.display().to_string(),
                message: "the tape keeps no dense inputs for sparse convs; walk the units \
                          with a Sweep instead"
                    .into(),
            });
        }
        let mut v: Vec<&Tensor> = self.tape.pfn.inputs().iter().collect();
        if v.len() != det.encoder.units().len() {
            return Err(missing());
        }
        v.extend(
            self.tape
                .backbone
                .unit_inputs(&det.backbone)
                .ok_or_else(missing)?,
        );
        v.extend(
            self.tape
                .head
                .unit_inputs(&det.head, &self.out.bev_features)
                .ok_or_else(missing)?,
        );
        if v.len() != det.units().len() {
            return Err(missing());
        }
        Ok(v)
    }
}

/// Wall time of each stage of one run.
#[derive(Clone, Debug, Default)]
pub struct StageTimes {
    pub stages: Vec<(&'static str, Duration)>,
}

impl StageTimes {
    fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.stages.push((name, t.elapsed()));
        out
    }

    pub fn total(&self) -> Duration {
        self.stages.iter().map(|(_, d)| *d).sum()
    }
}

#[derive(Clone, Debug)]
pub struct Detector {
    pub config: DetectorConfig,
    pub encoder: Encoder,
    pub backbone: BevBackbone,
    pub head: DenseHead,
    /// Keys of the weights file that the model did not use (reported as a warning).
    pub unused_keys: Vec<String>,
}

impl Detector {
    /// Loads a detector from an OpenPCDet YAML (or JSON) config and safetensors weights; with
    /// no config, the weights' embedded `pruneview.config` is used.
    pub fn load(config: Option<&Path>, weights: &Path) -> Result<Self, DetectorError> {
        let w = Weights::open(weights)?;
        let cfg = load_config(
            config,
            Some((
                weights,
                w.metadata().get(crate::model::config::CONFIG_METADATA_KEY),
            )),
        )?;
        Self::from_weights(cfg, &w)
    }

    pub fn from_weights(config: DetectorConfig, w: &Weights) -> Result<Self, DetectorError> {
        let build_err = |message: String| DetectorError::Build {
            path: w.path().display().to_string(),
            message,
        };
        let encoder = match config.backbone_3d {
            None => {
                let vfe = PillarVfe::load(w, &config.vfe, &config.data)?;
                if vfe.out_channels() != config.num_bev_features {
                    return Err(build_err(format!(
                        "VFE outputs {} channels but MAP_TO_BEV.NUM_BEV_FEATURES is {}",
                        vfe.out_channels(),
                        config.num_bev_features
                    )));
                }
                Encoder::Pillars(vfe)
            }
            Some(kind) => {
                let in_channels = config.data.used_features.len();
                let backbone = SparseBackbone::load(w, kind, in_channels, config.data.grid_size)?;
                let encoded_shape = backbone.out_shape().map_err(|e| {
                    build_err(format!(
                        "BACKBONE_3D on the {:?} voxel grid: {e}",
                        config.data.grid_size
                    ))
                })?;
                let bev = backbone.out_channels() * encoded_shape[0];
                if bev != config.num_bev_features {
                    return Err(build_err(format!(
                        "HeightCompression gives {} x {} = {bev} BEV channels but \
                         MAP_TO_BEV.NUM_BEV_FEATURES is {}",
                        backbone.out_channels(),
                        encoded_shape[0],
                        config.num_bev_features
                    )));
                }
                Encoder::Voxels {
                    backbone,
                    encoded_shape,
                }
            }
        };
        let backbone = BevBackbone::load(w, &config.backbone, config.num_bev_features)?;
        let c = backbone.out_channels();
        let head = match &config.head {
            HeadConfig::Anchor(h) => DenseHead::Anchor(
                AnchorHead::load(w, h, &config.data, config.class_names.len(), c)
                    .map_err(|e| head_err(e, &build_err))?,
            ),
            HeadConfig::Center(h) => DenseHead::Center(
                CenterHead::load(w, h, &config.data, &config.class_names, c)
                    .map_err(|e| head_err(e, &build_err))?,
            ),
        };
        let det = Detector {
            unused_keys: w.unused_keys(),
            config,
            encoder,
            backbone,
            head,
        };
        det.check_shapes().map_err(build_err)?;
        Ok(det)
    }

    /// Walks the feature-map sizes through the backbone so that a config whose blocks and
    /// deblocks do not line up is an error at load time, not a panic mid-run.
    fn check_shapes(&self) -> Result<(), String> {
        let mut size = self.bev_size();
        let mut outs = Vec::new();
        for (i, block) in self.backbone.blocks.iter().enumerate() {
            for u in block {
                size = out_size(u, size);
            }
            outs.push(match self.backbone.deblocks.get(i) {
                Some(d) => out_size(d, size),
                None => size,
            });
        }
        if outs.windows(2).any(|w| w[0] != w[1]) {
            return Err(format!(
                "BACKBONE_2D deblock outputs have different sizes {outs:?}; they cannot be concatenated"
            ));
        }
        let mut out = outs[0];
        if let Some(last) = self.backbone.deblocks.get(self.backbone.blocks.len()) {
            out = out_size(last, out);
        }
        if let DenseHead::Anchor(h) = &self.head
            && h.anchors.feature_map != out
        {
            {
                return Err(format!(
                    "the backbone outputs a {}x{} map but the anchors (feature_map_stride) expect {}x{}",
                    out.0, out.1, h.anchors.feature_map.0, h.anchors.feature_map.1
                ));
            }
        }
        Ok(())
    }

    /// Every parameterised unit in network order (VFE, backbone, deblocks, head).
    pub fn units(&self) -> Vec<&Unit> {
        let mut v: Vec<&Unit> = self.encoder.units();
        for b in &self.backbone.blocks {
            v.extend(b.iter());
        }
        v.extend(self.backbone.deblocks.iter());
        v.extend(self.head.units());
        v
    }

    pub fn units_mut(&mut self) -> Vec<&mut Unit> {
        let mut v: Vec<&mut Unit> = self.encoder.units_mut();
        for b in &mut self.backbone.blocks {
            v.extend(b.iter_mut());
        }
        v.extend(self.backbone.deblocks.iter_mut());
        v.extend(self.head.units_mut());
        v
    }

    /// Dense FLOPs (2 x MACs) of each unit in [`Self::units`] order, for a scan of `cost`:
    /// a PFN layer's scale with its rows (static voxels: pillars x max points; dynamic:
    /// points), a sparse conv's are `2 x pairs x Cin x Cout`.
    pub fn unit_flops(&self, cost: &ScanCost) -> Vec<f64> {
        let mut flops = Vec::new();
        match &self.encoder {
            Encoder::Pillars(vfe) => {
                for u in &vfe.layers {
                    flops.push(2.0 * cost.pfn_rows * u.weight.numel() as f64);
                }
            }
            Encoder::Voxels { backbone, .. } => {
                for (i, u) in backbone.units().iter().enumerate() {
                    let pairs = cost.sparse_pairs.get(i).copied().unwrap_or(0.0);
                    flops.push(2.0 * pairs * (u.in_channels() * u.out_channels()) as f64);
                }
            }
        }
        let mut size = self.bev_size();
        let mut block_out = Vec::new();
        for block in &self.backbone.blocks {
            for u in block {
                size = out_size(u, size);
                flops.push(unit_flops_at(u, size));
            }
            block_out.push(size);
        }
        let mut head_in = size;
        for (i, d) in self.backbone.deblocks.iter().enumerate() {
            let input = block_out.get(i).copied().unwrap_or(head_in);
            let out = out_size(d, input);
            flops.push(unit_flops_at(d, out));
            head_in = out;
        }
        for u in self.head.units() {
            flops.push(unit_flops_at(u, head_in));
        }
        flops
    }

    /// `(H, W)` of the BEV map that the 2-D backbone reads.
    pub fn bev_size(&self) -> (usize, usize) {
        match &self.encoder {
            Encoder::Pillars(_) => {
                let [nx, ny, _] = self.config.data.grid_size;
                (ny, nx)
            }
            Encoder::Voxels { encoded_shape, .. } => (encoded_shape[1], encoded_shape[2]),
        }
    }

    /// Total conv/linear FLOPs (2 x MACs) of a forward pass, sparse convs included.
    pub fn conv_flops(&self, out: &ForwardOutput) -> f64 {
        self.unit_flops(&ScanCost::of(out)).iter().sum()
    }

    /// Number of point feature columns the model expects.
    pub fn num_point_features(&self) -> usize {
        self.config.data.used_features.len()
    }

    /// Runs the network on `points` (`N x num_point_features`, after any FOV filter).
    pub fn forward(&self, points: &[f32]) -> Result<ForwardOutput, DetectorError> {
        self.forward_timed(points, &mut StageTimes::default())
    }

    pub fn forward_timed(
        &self,
        points: &[f32],
        times: &mut StageTimes,
    ) -> Result<ForwardOutput, DetectorError> {
        self.run(points, times, None)
    }

    /// A forward pass that also records what [`Self::backward`] needs (every unit's input
    /// and output: a few hundred MB for the reference models).
    pub fn forward_taped(&self, points: &[f32]) -> Result<TapedForward, DetectorError> {
        let mut tape = Tape::default();
        let out = self.run(points, &mut StageTimes::default(), Some(&mut tape))?;
        Ok(TapedForward { out, tape })
    }

    /// Vector-Jacobian product in eval mode: with `d_raw = dL/d(raw head outputs)` (same
    /// names and shapes as the forward's raw outputs; missing outputs count as zero), the
    /// gradients of every unit in [`Self::units`] order.
    pub fn backward(
        &self,
        taped: &TapedForward,
        d_raw: &RawOutputs,
    ) -> Result<Vec<UnitGrads>, DetectorError> {
        let out = &taped.out;
        let (d_bev, head) = self
            .head
            .backward(&out.bev_features, &taped.tape.head, d_raw)?;
        let (d_in, backbone) =
            self.backbone
                .backward(&taped.tape.backbone, &out.bev_features, d_bev)?;
        let mut grads = match &self.encoder {
            Encoder::Pillars(vfe) => {
                let d_pillars = backbone::scatter_backward(&out.pillars.cells, &d_in);
                vfe.backward(&taped.tape.pfn, &d_pillars)?
            }
            Encoder::Voxels { backbone, .. } => {
                let encoded = out
                    .sparse
                    .as_ref()
                    .and_then(|s| s.backbone.encoded())
                    .ok_or_else(|| DetectorError::Build {
                        path: self.config.source.display().to_string(),
                        message: "the taped forward pass holds no sparse tensors".into(),
                    })?;
                let d_encoded = height_compression_backward(encoded, &d_in);
                backbone.backward(&taped.tape.sparse, d_encoded)?
            }
        };
        grads.extend(backbone);
        grads.extend(head);
        Ok(grads)
    }

    /// Gradients under their state-dict names: every weight, bias and BN affine parameter.
    pub fn named_grads(&self, grads: &[UnitGrads]) -> Vec<(String, Tensor)> {
        self.units()
            .into_iter()
            .zip(grads)
            .flat_map(|(u, g)| g.named(u))
            .collect()
    }

    /// A scan must hold whole points of the model's feature columns.
    pub(super) fn check_points(&self, points: &[f32]) -> Result<(), DetectorError> {
        let f = self.num_point_features();
        if f == 0 || !points.len().is_multiple_of(f) {
            return Err(DetectorError::Features {
                found: points.len(),
                expected: f,
                names: self.config.data.used_features.join(", "),
            });
        }
        Ok(())
    }

    /// Static voxelization of the in-range points (`transform_points_to_voxels`).
    pub(super) fn voxelize(
        &self,
        points: &[f32],
        times: &mut StageTimes,
    ) -> Result<Voxels, DetectorError> {
        let f = self.num_point_features();
        let data = &self.config.data;
        let build_err = |message: String| DetectorError::Build {
            path: self.config.source.display().to_string(),
            message,
        };
        let vcfg = data.voxelizer.as_ref().ok_or_else(|| {
            build_err(format!("{:?} VFE needs a voxelizer", self.config.vfe.kind))
        })?;
        times
            .time("voxelize", || {
                let in_range = voxelize::filter_by_range(points, f, &data.point_cloud_range);
                voxelize::voxelize(
                    &in_range,
                    f,
                    &voxelize::VoxelConfig {
                        point_cloud_range: data.point_cloud_range,
                        voxel_size: data.voxel_size,
                        max_points_per_voxel: vcfg.max_points_per_voxel,
                        max_voxels: vcfg.max_voxels,
                    },
                )
            })
            .map_err(|e| build_err(e.to_string()))
    }

    /// Points to pillar features (pillar models): the input check, voxelization (PillarVFE)
    /// and the PFN layers, recorded in `pfn` when given.
    pub(super) fn vfe_stage(
        &self,
        vfe: &PillarVfe,
        points: &[f32],
        times: &mut StageTimes,
        pfn: Option<&mut PfnTape>,
    ) -> Result<(Option<Voxels>, Pillars), DetectorError> {
        self.check_points(points)?;
        let f = self.num_point_features();
        Ok(match vfe.kind {
            VfeKind::DynPillar => {
                let masked =
                    voxelize::filter_by_range(points, f, &self.config.data.point_cloud_range);
                let p = times.time("vfe", || vfe.forward_points_taped(&masked, f, pfn))?;
                (None, p)
            }
            _ => {
                let v = self.voxelize(points, times)?;
                let p = times.time("vfe", || vfe.forward_voxels_taped(&v, pfn))?;
                (Some(v), p)
            }
        })
    }

    /// Points to the BEV map the 2-D backbone reads (`spatial_features`), with what the
    /// encoder produced on the way.
    pub(super) fn encode(
        &self,
        points: &[f32],
        times: &mut StageTimes,
        pfn: Option<&mut PfnTape>,
        sparse: Option<&mut SparseTape>,
    ) -> Result<Encoded, DetectorError> {
        match &self.encoder {
            Encoder::Pillars(vfe) => {
                let (voxels, pillars) = self.vfe_stage(vfe, points, times, pfn)?;
                let [nx, ny, _] = self.config.data.grid_size;
                let bev = times.time("scatter", || backbone::scatter(&pillars, ny, nx));
                Ok(Encoded {
                    voxels,
                    pillars,
                    sparse: None,
                    bev,
                })
            }
            Encoder::Voxels { backbone, .. } => {
                self.check_points(points)?;
                let voxels = self.voxelize(points, times)?;
                let voxel_features = times.time("vfe", || mean_vfe(&voxels));
                let sites = voxel_sites(&voxels, backbone.sparse_shape)?;
                let out = times.time("backbone_3d", || {
                    backbone.forward_taped(sites, voxel_features.clone(), sparse)
                })?;
                let bev = times.time("height_compression", || {
                    out.encoded().map(height_compression)
                });
                let bev = bev.ok_or_else(|| DetectorError::Build {
                    path: self.config.source.display().to_string(),
                    message: "the 3-D backbone has no stages".into(),
                })?;
                Ok(Encoded {
                    voxels: Some(voxels),
                    pillars: Pillars::default(),
                    sparse: Some(SparseOutput {
                        voxel_features,
                        backbone: out,
                    }),
                    bev,
                })
            }
        }
    }

    fn run(
        &self,
        points: &[f32],
        times: &mut StageTimes,
        mut tape: Option<&mut Tape>,
    ) -> Result<ForwardOutput, DetectorError> {
        let (pfn, sparse_tape) = match tape.as_deref_mut() {
            Some(t) => (Some(&mut t.pfn), Some(&mut t.sparse)),
            None => (None, None),
        };
        let Encoded {
            voxels,
            pillars,
            sparse,
            bev,
        } = self.encode(points, times, pfn, sparse_tape)?;
        let (bb, head) = match tape {
            Some(t) => (Some(&mut t.backbone), Some(&mut t.head)),
            None => (None, None),
        };
        let bev_features = times.time("backbone", || self.backbone.forward_taped(bev, bb))?;
        let raw = times.time("head", || match head {
            Some(h) => self.head.forward_taped(&bev_features, h),
            None => self.head.forward(&bev_features),
        })?;
        Ok(ForwardOutput {
            voxels,
            pillars,
            sparse,
            bev_features,
            raw,
        })
    }

    /// Decodes raw head outputs into boxes (score threshold, top-k, rotated NMS).
    pub fn decode(&self, raw: &RawOutputs) -> Vec<Detection> {
        self.head.decode(raw)
    }

    /// Forward pass and decoding in one call.
    pub fn detect(&self, points: &[f32]) -> Result<Vec<Detection>, DetectorError> {
        let out = self.forward(points)?;
        Ok(self.decode(&out.raw))
    }
}

/// What [`Detector::encode`] returns.
pub(super) struct Encoded {
    pub voxels: Option<Voxels>,
    pub pillars: Pillars,
    pub sparse: Option<SparseOutput>,
    /// `spatial_features`, `[C, H, W]`.
    pub bev: Tensor,
}

fn head_err(e: HeadError, build_err: &impl Fn(String) -> DetectorError) -> DetectorError {
    match e {
        HeadError::Unit(u) => u.into(),
        other => build_err(other.to_string()),
    }
}

impl From<UnitError> for DetectorError {
    fn from(e: UnitError) -> Self {
        match e {
            UnitError::Weights(w) => DetectorError::Weights(w),
            UnitError::Nn(n) => DetectorError::Nn(n),
        }
    }
}

/// 2 x MACs of a conv unit whose output is `(h, w)` (a transposed conv's input size is
/// its output divided by the stride).
fn unit_flops_at(u: &Unit, (h, w): (usize, usize)) -> f64 {
    let per_pixel = u.weight.numel() as f64;
    match u.kind {
        UnitKind::ConvTranspose { stride } => {
            2.0 * per_pixel * ((h / stride) * (w / stride)) as f64
        }
        _ => 2.0 * per_pixel * (h * w) as f64,
    }
}

/// Output `(H, W)` of a unit for an input of `(H, W)`.
fn out_size(u: &Unit, (h, w): (usize, usize)) -> (usize, usize) {
    let k = u.weight.shape.get(2).copied().unwrap_or(1);
    match u.kind {
        UnitKind::Conv { stride, padding } => (
            (h + 2 * padding).saturating_sub(k) / stride + 1,
            (w + 2 * padding).saturating_sub(k) / stride + 1,
        ),
        UnitKind::ConvTranspose { stride } => ((h - 1) * stride + k, (w - 1) * stride + k),
        UnitKind::Linear | UnitKind::SparseConv(_) => (h, w),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::load_yaml_merged;
    use serde_json::Value;
    use std::path::PathBuf;

    const REF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/reference");

    /// SECOND's config with `edit` applied, loaded with the fixture's weights.
    fn second_with(edit: impl Fn(&mut Value)) -> Result<Detector, DetectorError> {
        let path = PathBuf::from(REF).join("cfgs/kitti_models/second.yaml");
        let mut raw = load_yaml_merged(&path).unwrap();
        edit(&mut raw);
        let cfg = DetectorConfig::from_value(raw, &path)?;
        let w = Weights::open(&PathBuf::from(REF).join("second_kitti_000008/weights.safetensors"))
            .unwrap();
        Detector::from_weights(cfg, &w)
    }

    fn set_range(raw: &mut Value, i: usize, v: f64) {
        raw["DATA_CONFIG"]["POINT_CLOUD_RANGE"][i] = Value::from(v);
    }

    #[test]
    fn voxel_model_bad_geometry_is_refused_at_load() {
        let det = second_with(|_| {}).unwrap();
        assert_eq!(det.bev_size(), (200, 176));
        assert_eq!(det.encoder.units().len(), 12);
        assert_eq!(det.units().len(), 12 + 14 + 3);

        // 5 voxels in z: conv4's unpadded z kernel meets a grid of depth 2.
        let err = second_with(|r| set_range(r, 5, -2.5))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("second_kitti_000008/weights.safetensors")
                && err.contains("backbone_3d.conv4.0.0")
                && err.contains("too shallow"),
            "{err}"
        );
        // 24 voxels in z: conv_out gives one plane, 128 BEV channels instead of 256.
        let err = second_with(|r| set_range(r, 5, -0.6))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HeightCompression gives 128 x 1 = 128")
                && err.contains("NUM_BEV_FEATURES is 256"),
            "{err}"
        );
        // 1400 voxels in x: a 175-wide BEV map, which the 2-D backbone's stride-2 block and
        // its x2 deblock turn into 176: the two deblock outputs cannot be concatenated.
        let err = second_with(|r| set_range(r, 3, 70.0))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("deblock outputs have different sizes"),
            "{err}"
        );
    }
}
