//! A `Detector` = config + weights + the stages: points -> pillars -> BEV map -> backbone ->
//! dense head -> raw outputs -> boxes.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::model::config::{DetectorConfig, HeadConfig, VfeKind, load_config};
use crate::model::{Weights, WeightsError};
use crate::nn::Tensor;
use crate::pointcloud::voxelize::{self, Voxels};

use super::backbone::{self, BackboneTape, BevBackbone};
use super::heads::{AnchorHead, CenterHead, DenseHead, Detection, HeadError, HeadTape, RawOutputs};
use super::layers::{Unit, UnitError, UnitGrads, UnitKind};
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
    /// Static voxels (PillarVFE models only).
    pub voxels: Option<Voxels>,
    pub pillars: Pillars,
    /// `spatial_features_2d`, `[C, H, W]`.
    pub bev_features: Tensor,
    pub raw: RawOutputs,
}

/// What a backward pass needs from the forward pass, per stage.
#[derive(Debug, Default)]
struct Tape {
    pfn: PfnTape,
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
    /// The input of every unit of `det` (the detector that recorded this pass), in
    /// [`Detector::units`] order: `rows x in` for PFN layers, `[C, H, W]` maps otherwise.
    /// What layer-wise recovery fits each unit to.
    pub fn unit_inputs<'a>(&'a self, det: &Detector) -> Result<Vec<&'a Tensor>, DetectorError> {
        let missing = || DetectorError::Build {
            path: det.config.source.display().to_string(),
            message: "the taped forward pass was not recorded by this detector".into(),
        };
        let mut v: Vec<&Tensor> = self.tape.pfn.inputs().iter().collect();
        if v.len() != det.vfe.layers.len() {
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
    pub vfe: PillarVfe,
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
        let vfe = PillarVfe::load(w, &config.vfe, &config.data)?;
        if vfe.out_channels() != config.num_bev_features {
            return Err(build_err(format!(
                "VFE outputs {} channels but MAP_TO_BEV.NUM_BEV_FEATURES is {}",
                vfe.out_channels(),
                config.num_bev_features
            )));
        }
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
            vfe,
            backbone,
            head,
        };
        det.check_shapes().map_err(build_err)?;
        Ok(det)
    }

    /// Walks the feature-map sizes through the backbone so that a config whose blocks and
    /// deblocks do not line up is an error at load time, not a panic mid-run.
    fn check_shapes(&self) -> Result<(), String> {
        let [nx, ny, _] = self.config.data.grid_size;
        let mut size = (ny, nx);
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
        let mut v: Vec<&Unit> = self.vfe.layers.iter().collect();
        for b in &self.backbone.blocks {
            v.extend(b.iter());
        }
        v.extend(self.backbone.deblocks.iter());
        v.extend(self.head.units());
        v
    }

    pub fn units_mut(&mut self) -> Vec<&mut Unit> {
        let mut v: Vec<&mut Unit> = self.vfe.layers.iter_mut().collect();
        for b in &mut self.backbone.blocks {
            v.extend(b.iter_mut());
        }
        v.extend(self.backbone.deblocks.iter_mut());
        v.extend(self.head.units_mut());
        v
    }

    /// Dense FLOPs (2 x MACs) of each unit in [`Self::units`] order, for one scan whose PFN
    /// layers see `pfn_rows` rows (static voxels: pillars x max points; dynamic: points).
    pub fn unit_flops(&self, pfn_rows: usize) -> Vec<f64> {
        let [nx, ny, _] = self.config.data.grid_size;
        let mut flops = Vec::new();
        for u in &self.vfe.layers {
            flops.push(2.0 * pfn_rows as f64 * u.weight.numel() as f64);
        }
        let mut size = (ny, nx);
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

    /// Total conv/linear FLOPs (2 x MACs) of a forward pass.
    pub fn conv_flops(&self, out: &ForwardOutput) -> f64 {
        self.unit_flops(out.pillars.point_rows).iter().sum()
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
        let d_pillars = backbone::scatter_backward(&out.pillars.cells, &d_in);
        let mut grads = self.vfe.backward(&taped.tape.pfn, &d_pillars)?;
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

    /// Points to pillar features: the input check, voxelization (PillarVFE) and the PFN
    /// layers, recorded in `pfn` when given.
    pub(super) fn vfe_stage(
        &self,
        points: &[f32],
        times: &mut StageTimes,
        pfn: Option<&mut PfnTape>,
    ) -> Result<(Option<Voxels>, Pillars), DetectorError> {
        self.check_points(points)?;
        let f = self.num_point_features();
        let data = &self.config.data;
        Ok(match self.vfe.kind {
            VfeKind::Pillar => {
                let vcfg = data
                    .voxelizer
                    .as_ref()
                    .ok_or_else(|| DetectorError::Build {
                        path: self.config.source.display().to_string(),
                        message: "PillarVFE needs a voxelizer".into(),
                    })?;
                let v = times
                    .time("voxelize", || {
                        let in_range =
                            voxelize::filter_by_range(points, f, &data.point_cloud_range);
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
                    .map_err(|e| DetectorError::Build {
                        path: self.config.source.display().to_string(),
                        message: e.to_string(),
                    })?;
                let p = times.time("vfe", || self.vfe.forward_voxels_taped(&v, pfn))?;
                (Some(v), p)
            }
            VfeKind::DynPillar => {
                let masked = voxelize::filter_by_range(points, f, &data.point_cloud_range);
                let p = times.time("vfe", || self.vfe.forward_points_taped(&masked, f, pfn))?;
                (None, p)
            }
        })
    }

    fn run(
        &self,
        points: &[f32],
        times: &mut StageTimes,
        mut tape: Option<&mut Tape>,
    ) -> Result<ForwardOutput, DetectorError> {
        let pfn = tape.as_deref_mut().map(|t| &mut t.pfn);
        let (voxels, pillars) = self.vfe_stage(points, times, pfn)?;
        let data = &self.config.data;
        let [nx, ny, _] = data.grid_size;
        let bev = times.time("scatter", || backbone::scatter(&pillars, ny, nx));
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
        UnitKind::Linear => (h, w),
    }
}
