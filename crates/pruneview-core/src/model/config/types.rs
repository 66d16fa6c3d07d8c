//! The typed detector config: everything the engine needs, checked when parsed.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

/// Everything the engine needs to build and run a detector.
#[derive(Clone, Debug, Serialize)]
pub struct DetectorConfig {
    /// Where the config came from (for messages).
    pub source: PathBuf,
    /// `MODEL.NAME`, e.g. `PointPillar` or `CenterPoint`.
    pub model_name: String,
    pub class_names: Vec<String>,
    pub data: DataConfig,
    pub vfe: VfeConfig,
    /// `MODEL.BACKBONE_3D` of voxel models (with `MeanVFE` and `HeightCompression`).
    pub backbone_3d: Option<SparseBackboneKind>,
    pub num_bev_features: usize,
    pub backbone: BackboneConfig,
    pub head: HeadConfig,
    /// The merged config as JSON (embedded into exported safetensors files).
    #[serde(skip)]
    pub raw: Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct DataConfig {
    /// `[x_min, y_min, z_min, x_max, y_max, z_max]`, float32 as OpenPCDet keeps it.
    pub point_cloud_range: [f32; 6],
    /// `POINT_FEATURE_ENCODING.used_feature_list`, e.g. `[x, y, z, intensity]`.
    pub used_features: Vec<String>,
    pub voxel_size: [f32; 3],
    /// `[nx, ny, nz]` = round((max - min) / voxel).
    pub grid_size: [usize; 3],
    /// Static voxelization (`transform_points_to_voxels`), or `None` for the placeholder used
    /// by dynamic VFEs.
    pub voxelizer: Option<VoxelizerConfig>,
    /// `FOV_POINTS_ONLY` from the dataset config (KITTI): the camera-FOV filter applies.
    pub fov_points_only: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct VoxelizerConfig {
    pub max_points_per_voxel: usize,
    /// Test-time `MAX_NUMBER_OF_VOXELS`.
    pub max_voxels: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum VfeKind {
    /// `PillarVFE`: static voxels, padded slots (see the notes on the padding gotcha).
    Pillar,
    /// `DynPillarVFE`: per-point features, scatter max over pillars.
    DynPillar,
    /// `MeanVFE`: each voxel's mean point, the input of a sparse 3-D backbone.
    Mean,
}

impl VfeKind {
    /// Pillar VFEs run PFN layers and scatter to the BEV grid; `MeanVFE` feeds a 3-D backbone.
    pub fn is_pillar(self) -> bool {
        matches!(self, VfeKind::Pillar | VfeKind::DynPillar)
    }
}

/// Which OpenPCDet 3-D backbone (`MODEL.BACKBONE_3D.NAME`); its layer table lives in
/// `detect::sparse_backbone`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SparseBackboneKind {
    /// `VoxelBackBone8x` (SECOND, PV-RCNN, Voxel R-CNN).
    Plain8x,
    /// `VoxelResBackBone8x` (CenterPoint-voxel).
    Res8x,
}

impl SparseBackboneKind {
    pub const NAMES: [&str; 2] = ["VoxelBackBone8x", "VoxelResBackBone8x"];

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "VoxelBackBone8x" => Some(Self::Plain8x),
            "VoxelResBackBone8x" => Some(Self::Res8x),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct VfeConfig {
    pub kind: VfeKind,
    pub with_distance: bool,
    pub use_absolute_xyz: bool,
    pub use_norm: bool,
    pub num_filters: Vec<usize>,
}

impl VfeConfig {
    /// Channels of the per-point feature vector that enters the first PFN layer.
    pub fn input_channels(&self, num_point_features: usize) -> usize {
        num_point_features
            + if self.use_absolute_xyz { 6 } else { 3 }
            + usize::from(self.with_distance)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BackboneConfig {
    pub layer_nums: Vec<usize>,
    pub layer_strides: Vec<usize>,
    pub num_filters: Vec<usize>,
    pub upsample_strides: Vec<f64>,
    pub num_upsample_filters: Vec<usize>,
    pub use_conv_for_no_stride: bool,
}

#[derive(Clone, Debug, Serialize)]
pub enum HeadConfig {
    Anchor(AnchorHeadConfig),
    Center(CenterHeadConfig),
}

#[derive(Clone, Debug, Serialize)]
pub struct AnchorHeadConfig {
    pub class_agnostic: bool,
    pub use_direction_classifier: bool,
    pub dir_offset: f32,
    pub dir_limit_offset: f32,
    pub num_dir_bins: usize,
    pub anchors: Vec<AnchorClassConfig>,
    pub post: PostProcessing,
}

#[derive(Clone, Debug, Serialize)]
pub struct AnchorClassConfig {
    pub class_name: String,
    pub sizes: Vec<[f32; 3]>,
    pub rotations: Vec<f32>,
    pub bottom_heights: Vec<f32>,
    pub align_center: bool,
    pub feature_map_stride: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct PostProcessing {
    pub score_thresh: f32,
    pub output_raw_score: bool,
    pub nms: NmsConfig,
    /// CenterPoint only: `POST_CENTER_LIMIT_RANGE`.
    pub post_center_limit_range: Option<[f32; 6]>,
    /// CenterPoint only: `MAX_OBJ_PER_SAMPLE` (top-k per head).
    pub max_obj_per_sample: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct NmsConfig {
    pub multi_classes_nms: bool,
    pub nms_type: String,
    pub thresh: f32,
    pub pre_max_size: usize,
    pub post_max_size: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct CenterHeadConfig {
    pub class_names_each_head: Vec<Vec<String>>,
    pub shared_conv_channel: usize,
    pub use_bias_before_norm: bool,
    pub num_hm_conv: usize,
    /// Branches in order, `hm` last, as `(name, out_channels, num_conv)`.
    pub head_order: Vec<(String, usize, usize)>,
    pub feature_map_stride: usize,
    pub bn_eps: f32,
    pub post: PostProcessing,
}
