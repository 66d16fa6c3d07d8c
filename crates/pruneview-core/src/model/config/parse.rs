//! The merged config tree to typed structs: every missing or malformed field is an error
//! naming the file and the field's path, and values that size buffers are bounded.

use std::path::Path;

use serde_json::Value;

use super::ConfigError;
use super::types::*;

/// Single-stage detectors of OpenPCDet's registry, which our parts build.
const SUPPORTED_MODELS: [&str; 3] = ["PointPillar", "CenterPoint", "SECONDNet"];
/// The rest of OpenPCDet's registry (`pcdet/models/detectors/__init__.py`): their second
/// stages are not implemented yet.
const OTHER_OPENPCDET_MODELS: [&str; 13] = [
    "Detector3DTemplate",
    "PartA2Net",
    "PVRCNN",
    "PointRCNN",
    "SECONDNetIoU",
    "CaDDN",
    "VoxelRCNN",
    "PVRCNNPlusPlus",
    "MPPNet",
    "MPPNetE2E",
    "PillarNet",
    "VoxelNeXt",
    "TransFusion",
];

/// `MODEL.NAME` must be a detector OpenPCDet knows (it refuses any other) and one we run.
fn check_model_name(r: &Reader, name: &str) -> Result<(), ConfigError> {
    if SUPPORTED_MODELS.contains(&name) {
        return Ok(());
    }
    let problem = if OTHER_OPENPCDET_MODELS.contains(&name) {
        format!(
            "`{name}` is not supported yet (supported: {})",
            SUPPORTED_MODELS.join(", ")
        )
    } else {
        format!(
            "`{name}` is not an OpenPCDet detector (supported: {})",
            SUPPORTED_MODELS.join(", ")
        )
    };
    Err(r.err("MODEL.NAME", problem))
}

/// Typed, path-aware access to the merged JSON tree.
struct Reader<'a> {
    path: &'a Path,
}

impl Reader<'_> {
    fn err(&self, field: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Field {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            problem: problem.into(),
        }
    }

    fn get<'v>(&self, v: &'v Value, field: &str) -> Result<&'v Value, ConfigError> {
        let mut cur = v;
        for part in field.split('.') {
            cur = cur.get(part).ok_or_else(|| self.err(field, "missing"))?;
        }
        Ok(cur)
    }

    fn opt<'v>(&self, v: &'v Value, field: &str) -> Option<&'v Value> {
        let mut cur = v;
        for part in field.split('.') {
            cur = cur.get(part)?;
        }
        (!cur.is_null()).then_some(cur)
    }

    fn f64(&self, v: &Value, field: &str) -> Result<f64, ConfigError> {
        let x = self.get(v, field)?;
        x.as_f64()
            .ok_or_else(|| self.err(field, format!("expected a number, found {x}")))
    }

    fn f64_or(&self, v: &Value, field: &str, default: f64) -> Result<f64, ConfigError> {
        match self.opt(v, field) {
            Some(_) => self.f64(v, field),
            None => Ok(default),
        }
    }

    fn usize_of(&self, x: &Value, field: &str) -> Result<usize, ConfigError> {
        x.as_u64()
            .map(|u| u as usize)
            .or_else(|| {
                x.as_f64()
                    .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                    .map(|f| f as usize)
            })
            .ok_or_else(|| self.err(field, format!("expected a non-negative integer, found {x}")))
    }

    fn usize(&self, v: &Value, field: &str) -> Result<usize, ConfigError> {
        let x = self.get(v, field)?;
        self.usize_of(x, field)
    }

    fn usize_or(&self, v: &Value, field: &str, default: usize) -> Result<usize, ConfigError> {
        match self.opt(v, field) {
            Some(_) => self.usize(v, field),
            None => Ok(default),
        }
    }

    fn bool_or(&self, v: &Value, field: &str, default: bool) -> Result<bool, ConfigError> {
        match self.opt(v, field) {
            Some(x) => x
                .as_bool()
                .ok_or_else(|| self.err(field, format!("expected true/false, found {x}"))),
            None => Ok(default),
        }
    }

    fn str(&self, v: &Value, field: &str) -> Result<String, ConfigError> {
        let x = self.get(v, field)?;
        x.as_str()
            .map(str::to_string)
            .ok_or_else(|| self.err(field, format!("expected a string, found {x}")))
    }

    fn array<'v>(&self, v: &'v Value, field: &str) -> Result<&'v Vec<Value>, ConfigError> {
        let x = self.get(v, field)?;
        x.as_array()
            .ok_or_else(|| self.err(field, format!("expected a list, found {x}")))
    }

    fn f64_list(&self, v: &Value, field: &str) -> Result<Vec<f64>, ConfigError> {
        self.array(v, field)?
            .iter()
            .map(|x| {
                x.as_f64()
                    .ok_or_else(|| self.err(field, format!("expected numbers, found {x}")))
            })
            .collect()
    }

    fn usize_list(&self, v: &Value, field: &str) -> Result<Vec<usize>, ConfigError> {
        self.array(v, field)?
            .iter()
            .map(|x| self.usize_of(x, field))
            .collect()
    }

    fn str_list(&self, v: &Value, field: &str) -> Result<Vec<String>, ConfigError> {
        self.array(v, field)?
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.err(field, format!("expected strings, found {x}")))
            })
            .collect()
    }

    fn f32_array<const N: usize>(&self, v: &Value, field: &str) -> Result<[f32; N], ConfigError> {
        let list = self.f64_list(v, field)?;
        let arr: [f64; N] = list
            .as_slice()
            .try_into()
            .map_err(|_| self.err(field, format!("expected {N} numbers, found {}", list.len())))?;
        Ok(arr.map(|x| x as f32))
    }

    /// OpenPCDet writes test/train variants as `{'train': a, 'test': b}`: take `test`.
    fn test_variant<'v>(&self, v: &'v Value) -> &'v Value {
        v.get("test").unwrap_or(v)
    }
}

impl DataConfig {
    /// The `DATA_CONFIG` of a merged OpenPCDet config tree (ranges, grid, voxelization),
    /// whatever its model.
    pub fn from_value(raw: &Value, path: &Path) -> Result<Self, ConfigError> {
        let r = Reader { path };
        parse_data(&r, r.get(raw, "DATA_CONFIG")?)
    }
}

impl DetectorConfig {
    /// Builds the typed config from a merged OpenPCDet config tree.
    pub fn from_value(raw: Value, path: &Path) -> Result<Self, ConfigError> {
        let r = Reader { path };
        let class_names = r.str_list(&raw, "CLASS_NAMES")?;
        let data_v = r.get(&raw, "DATA_CONFIG")?;
        let model = r.get(&raw, "MODEL")?;
        let data = parse_data(&r, data_v)?;
        let model_name = r.str(model, "NAME")?;
        check_model_name(&r, &model_name)?;

        let vfe_name = r.str(model, "VFE.NAME")?;
        let kind = match vfe_name.as_str() {
            "PillarVFE" => VfeKind::Pillar,
            "DynPillarVFE" | "DynamicPillarVFE" => VfeKind::DynPillar,
            "MeanVFE" => VfeKind::Mean,
            other => {
                return Err(r.err(
                    "MODEL.VFE.NAME",
                    format!(
                        "unsupported VFE `{other}` (supported: PillarVFE, DynPillarVFE, MeanVFE)"
                    ),
                ));
            }
        };
        let vfe = VfeConfig {
            kind,
            with_distance: r.bool_or(model, "VFE.WITH_DISTANCE", false)?,
            use_absolute_xyz: r.bool_or(model, "VFE.USE_ABSLOTE_XYZ", true)?,
            use_norm: r.bool_or(model, "VFE.USE_NORM", true)?,
            num_filters: match r.opt(model, "VFE.NUM_FILTERS") {
                Some(_) => r.usize_list(model, "VFE.NUM_FILTERS")?,
                None if kind.is_pillar() => r.usize_list(model, "VFE.NUM_FILTERS")?,
                None => Vec::new(),
            },
        };
        if kind.is_pillar() && vfe.num_filters.is_empty() {
            return Err(r.err("MODEL.VFE.NUM_FILTERS", "must list at least one layer"));
        }
        if kind != VfeKind::DynPillar && data.voxelizer.is_none() {
            return Err(r.err(
                "DATA_CONFIG.DATA_PROCESSOR",
                format!("{vfe_name} needs `transform_points_to_voxels`"),
            ));
        }

        let backbone_3d = match r.opt(model, "BACKBONE_3D") {
            Some(_) => {
                let name = r.str(model, "BACKBONE_3D.NAME")?;
                Some(SparseBackboneKind::from_name(&name).ok_or_else(|| {
                    r.err(
                        "MODEL.BACKBONE_3D.NAME",
                        format!(
                            "unsupported `{name}` (supported: {})",
                            SparseBackboneKind::NAMES.join(", ")
                        ),
                    )
                })?)
            }
            None => None,
        };
        let scatter = r.str(model, "MAP_TO_BEV.NAME")?;
        match (scatter.as_str(), kind.is_pillar(), backbone_3d) {
            ("PointPillarScatter", true, None) => {
                if data.grid_size[2] != 1 {
                    return Err(r.err(
                        "DATA_CONFIG.VOXEL_SIZE",
                        format!(
                            "PointPillarScatter needs one voxel in z, but the grid is {:?}",
                            data.grid_size
                        ),
                    ));
                }
            }
            ("HeightCompression", false, Some(_)) => {}
            ("PointPillarScatter" | "HeightCompression", _, _) => {
                return Err(r.err(
                    "MODEL",
                    format!(
                        "{vfe_name} with {scatter}{} is not an OpenPCDet combination \
                         (pillar VFEs use PointPillarScatter; MeanVFE uses a BACKBONE_3D and \
                         HeightCompression)",
                        if backbone_3d.is_some() {
                            " and a BACKBONE_3D"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            _ => {
                return Err(r.err(
                    "MODEL.MAP_TO_BEV.NAME",
                    format!(
                        "unsupported `{scatter}` (supported: PointPillarScatter, HeightCompression)"
                    ),
                ));
            }
        }
        let num_bev_features = r.usize(model, "MAP_TO_BEV.NUM_BEV_FEATURES")?;

        let bb_name = r.str(model, "BACKBONE_2D.NAME")?;
        if bb_name != "BaseBEVBackbone" {
            return Err(r.err(
                "MODEL.BACKBONE_2D.NAME",
                format!("unsupported `{bb_name}` (supported: BaseBEVBackbone)"),
            ));
        }
        let bb = r.get(model, "BACKBONE_2D")?;
        let list_or_empty_usize = |f: &str| match r.opt(bb, f) {
            Some(_) => r.usize_list(bb, f),
            None => Ok(Vec::new()),
        };
        let backbone = BackboneConfig {
            layer_nums: list_or_empty_usize("LAYER_NUMS")?,
            layer_strides: list_or_empty_usize("LAYER_STRIDES")?,
            num_filters: list_or_empty_usize("NUM_FILTERS")?,
            upsample_strides: match r.opt(bb, "UPSAMPLE_STRIDES") {
                Some(_) => r.f64_list(bb, "UPSAMPLE_STRIDES")?,
                None => Vec::new(),
            },
            num_upsample_filters: list_or_empty_usize("NUM_UPSAMPLE_FILTERS")?,
            use_conv_for_no_stride: r.bool_or(bb, "USE_CONV_FOR_NO_STRIDE", false)?,
        };
        let n = backbone.layer_nums.len();
        if n == 0 || backbone.layer_strides.len() != n || backbone.num_filters.len() != n {
            return Err(r.err(
                "MODEL.BACKBONE_2D",
                "LAYER_NUMS, LAYER_STRIDES and NUM_FILTERS must be non-empty lists of one length",
            ));
        }
        if backbone.upsample_strides.len() != backbone.num_upsample_filters.len() {
            return Err(r.err(
                "MODEL.BACKBONE_2D",
                "UPSAMPLE_STRIDES and NUM_UPSAMPLE_FILTERS must have one length",
            ));
        }
        if let Some(s) = backbone.upsample_strides.iter().find(|s| **s <= 0.0) {
            return Err(r.err(
                "MODEL.BACKBONE_2D.UPSAMPLE_STRIDES",
                format!("strides must be positive, found {s}"),
            ));
        }

        let head_v = r.get(model, "DENSE_HEAD")?;
        let head_name = r.str(head_v, "NAME")?;
        let head = match head_name.as_str() {
            "AnchorHeadSingle" => HeadConfig::Anchor(parse_anchor_head(&r, head_v, model)?),
            "CenterHead" => HeadConfig::Center(parse_center_head(&r, head_v, &class_names)?),
            other => {
                return Err(r.err(
                    "MODEL.DENSE_HEAD.NAME",
                    format!("unsupported head `{other}` (supported: AnchorHeadSingle, CenterHead)"),
                ));
            }
        };

        Ok(DetectorConfig {
            source: path.to_path_buf(),
            model_name,
            class_names,
            data,
            vfe,
            backbone_3d,
            num_bev_features,
            backbone,
            head,
            raw,
        })
    }

    /// The merged config as compact JSON, for `__metadata__["pruneview.config"]`.
    pub fn to_json(&self) -> String {
        self.raw.to_string()
    }
}

/// Sane bounds on the config values that size buffers, so a typo (or a hostile file) is an
/// error naming the value instead of a request for terabytes. OpenPCDet's configs use 5-100
/// points per voxel, up to 60 000 voxels and up to about 1 500 x 1 500 BEV cells.
const MAX_POINTS_PER_VOXEL: usize = 1024;
const MAX_VOXELS: usize = 1 << 22;
const MAX_GRID_PER_AXIS: usize = 1 << 15;
const MAX_BEV_CELLS: usize = 1 << 22;

fn parse_data(r: &Reader, data: &Value) -> Result<DataConfig, ConfigError> {
    let point_cloud_range: [f32; 6] = r.f32_array(data, "POINT_CLOUD_RANGE")?;
    let used_features = r.str_list(data, "POINT_FEATURE_ENCODING.used_feature_list")?;
    let encoding = r.str(data, "POINT_FEATURE_ENCODING.encoding_type")?;
    if encoding != "absolute_coordinates_encoding" {
        return Err(r.err(
            "DATA_CONFIG.POINT_FEATURE_ENCODING.encoding_type",
            format!("unsupported `{encoding}` (supported: absolute_coordinates_encoding)"),
        ));
    }
    let processors = r.array(data, "DATA_PROCESSOR")?;
    let mut voxel_size = None;
    let mut voxelizer = None;
    for p in processors {
        let name = r.str(p, "NAME")?;
        match name.as_str() {
            "transform_points_to_voxels" => {
                voxel_size = Some(r.f32_array::<3>(p, "VOXEL_SIZE")?);
                let max_voxels = r.test_variant(r.get(p, "MAX_NUMBER_OF_VOXELS")?);
                let v = VoxelizerConfig {
                    max_points_per_voxel: r.usize(p, "MAX_POINTS_PER_VOXEL")?,
                    max_voxels: r.usize_of(max_voxels, "MAX_NUMBER_OF_VOXELS.test")?,
                };
                // The voxel buffer holds voxels x points x features floats: bound both.
                for (field, value, max) in [
                    (
                        "MAX_POINTS_PER_VOXEL",
                        v.max_points_per_voxel,
                        MAX_POINTS_PER_VOXEL,
                    ),
                    ("MAX_NUMBER_OF_VOXELS", v.max_voxels, MAX_VOXELS),
                ] {
                    if value == 0 || value > max {
                        return Err(r.err(
                            &format!("DATA_CONFIG.DATA_PROCESSOR.{field}"),
                            format!("{value} is outside 1..={max}"),
                        ));
                    }
                }
                voxelizer = Some(v);
            }
            "transform_points_to_voxels_placeholder" => {
                voxel_size = Some(r.f32_array::<3>(p, "VOXEL_SIZE")?);
            }
            // Test-time no-ops for us: the range mask is part of voxelization; shuffling is
            // disabled at test time for KITTI and order-free for dynamic VFEs.
            "mask_points_and_boxes_outside_range" | "shuffle_points" => {}
            other => {
                return Err(r.err(
                    "DATA_CONFIG.DATA_PROCESSOR",
                    format!("unsupported processor `{other}`"),
                ));
            }
        }
    }
    let voxel_size = voxel_size.ok_or_else(|| {
        r.err(
            "DATA_CONFIG.DATA_PROCESSOR",
            "no transform_points_to_voxels(_placeholder) with a VOXEL_SIZE",
        )
    })?;
    let mut grid_size = [0usize; 3];
    for i in 0..3 {
        // OpenPCDet: np.round((range[3:] - range[:3]) / voxel_size) on float32 arrays.
        let g = ((point_cloud_range[i + 3] - point_cloud_range[i]) / voxel_size[i]).round();
        if !g.is_finite() || g < 1.0 {
            return Err(r.err(
                "DATA_CONFIG.VOXEL_SIZE",
                format!("gives an empty grid along axis {i} for the point cloud range"),
            ));
        }
        if g > MAX_GRID_PER_AXIS as f32 {
            return Err(r.err(
                "DATA_CONFIG.VOXEL_SIZE",
                format!(
                    "gives {g} cells along axis {i} for the point cloud range; at most \
                     {MAX_GRID_PER_AXIS} are supported"
                ),
            ));
        }
        grid_size[i] = g as usize;
    }
    let bev = grid_size[0] * grid_size[1];
    if bev > MAX_BEV_CELLS {
        return Err(r.err(
            "DATA_CONFIG.VOXEL_SIZE",
            format!(
                "gives a {} x {} bird's-eye grid ({bev} cells) for the point cloud range; at \
                 most {MAX_BEV_CELLS} are supported (each channel of the BEV map is one float \
                 per cell)",
                grid_size[0], grid_size[1]
            ),
        ));
    }
    Ok(DataConfig {
        point_cloud_range,
        used_features,
        voxel_size,
        grid_size,
        voxelizer,
        fov_points_only: r.bool_or(data, "FOV_POINTS_ONLY", false)?,
    })
}

fn parse_nms(r: &Reader, v: &Value) -> Result<NmsConfig, ConfigError> {
    Ok(NmsConfig {
        multi_classes_nms: r.bool_or(v, "MULTI_CLASSES_NMS", false)?,
        nms_type: r.str(v, "NMS_TYPE")?,
        thresh: r.f64(v, "NMS_THRESH")? as f32,
        pre_max_size: r.usize(v, "NMS_PRE_MAXSIZE")?,
        post_max_size: r.usize(v, "NMS_POST_MAXSIZE")?,
    })
}

fn check_nms(r: &Reader, nms: &NmsConfig, field: &str) -> Result<(), ConfigError> {
    if nms.nms_type != "nms_gpu" {
        return Err(r.err(
            field,
            format!(
                "unsupported NMS_TYPE `{}` (supported: nms_gpu)",
                nms.nms_type
            ),
        ));
    }
    if nms.multi_classes_nms {
        return Err(r.err(field, "MULTI_CLASSES_NMS: True is not supported"));
    }
    Ok(())
}

fn parse_anchor_head(
    r: &Reader,
    head: &Value,
    model: &Value,
) -> Result<AnchorHeadConfig, ConfigError> {
    let mut anchors = Vec::new();
    for a in r.array(head, "ANCHOR_GENERATOR_CONFIG")? {
        let sizes = r
            .array(a, "anchor_sizes")?
            .iter()
            .map(|s| {
                let v: Option<Vec<f32>> = s.as_array().map(|l| {
                    l.iter()
                        .filter_map(|x| x.as_f64().map(|f| f as f32))
                        .collect()
                });
                match v {
                    Some(v) if v.len() == 3 => Ok([v[0], v[1], v[2]]),
                    _ => Err(r.err(
                        "ANCHOR_GENERATOR_CONFIG.anchor_sizes",
                        format!("expected [dx, dy, dz] lists, found {s}"),
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let f32s = |f: &str| -> Result<Vec<f32>, ConfigError> {
            Ok(r.f64_list(a, f)?.into_iter().map(|x| x as f32).collect())
        };
        anchors.push(AnchorClassConfig {
            class_name: r.str(a, "class_name")?,
            sizes,
            rotations: f32s("anchor_rotations")?,
            bottom_heights: f32s("anchor_bottom_heights")?,
            align_center: r.bool_or(a, "align_center", false)?,
            feature_map_stride: r.usize(a, "feature_map_stride")?,
        });
    }
    if anchors.is_empty() {
        return Err(r.err(
            "MODEL.DENSE_HEAD.ANCHOR_GENERATOR_CONFIG",
            "needs at least one anchor class",
        ));
    }
    if let Some(name) = r.opt(head, "TARGET_ASSIGNER_CONFIG.BOX_CODER")
        && name.as_str() != Some("ResidualCoder")
    {
        {
            return Err(r.err(
                "MODEL.DENSE_HEAD.TARGET_ASSIGNER_CONFIG.BOX_CODER",
                format!("unsupported box coder {name} (supported: ResidualCoder)"),
            ));
        }
    }
    let post_v = r.get(model, "POST_PROCESSING")?;
    let nms = parse_nms(r, r.get(post_v, "NMS_CONFIG")?)?;
    check_nms(r, &nms, "MODEL.POST_PROCESSING.NMS_CONFIG")?;
    Ok(AnchorHeadConfig {
        class_agnostic: r.bool_or(head, "CLASS_AGNOSTIC", false)?,
        use_direction_classifier: r.bool_or(head, "USE_DIRECTION_CLASSIFIER", false)?,
        dir_offset: r.f64_or(head, "DIR_OFFSET", 0.0)? as f32,
        dir_limit_offset: r.f64_or(head, "DIR_LIMIT_OFFSET", 0.0)? as f32,
        num_dir_bins: r.usize_or(head, "NUM_DIR_BINS", 2)?,
        anchors,
        post: PostProcessing {
            score_thresh: r.f64(post_v, "SCORE_THRESH")? as f32,
            output_raw_score: r.bool_or(post_v, "OUTPUT_RAW_SCORE", false)?,
            nms,
            post_center_limit_range: None,
            max_obj_per_sample: 0,
        },
    })
}

fn parse_center_head(
    r: &Reader,
    head: &Value,
    class_names: &[String],
) -> Result<CenterHeadConfig, ConfigError> {
    let each = r
        .array(head, "CLASS_NAMES_EACH_HEAD")?
        .iter()
        .map(|h| {
            h.as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .ok_or_else(|| r.err("CLASS_NAMES_EACH_HEAD", "expected lists of class names"))
        })
        .collect::<Result<Vec<Vec<String>>, _>>()?;
    for name in each.iter().flatten() {
        if !class_names.contains(name) {
            return Err(r.err(
                "MODEL.DENSE_HEAD.CLASS_NAMES_EACH_HEAD",
                format!("class `{name}` is not in CLASS_NAMES"),
            ));
        }
    }
    let num_hm_conv = r.usize_or(head, "NUM_HM_CONV", 2)?;
    let sep = r.get(head, "SEPARATE_HEAD_CFG")?;
    let mut head_order = Vec::new();
    for name in r.str_list(sep, "HEAD_ORDER")? {
        let d = r.get(sep, &format!("HEAD_DICT.{name}"))?;
        head_order.push((
            name.clone(),
            r.usize(d, "out_channels")?,
            r.usize_or(d, "num_conv", 2)?,
        ));
    }
    head_order.push(("hm".to_string(), 0, num_hm_conv));
    let post_v = r.get(head, "POST_PROCESSING")?;
    let nms = parse_nms(r, r.get(post_v, "NMS_CONFIG")?)?;
    check_nms(r, &nms, "MODEL.DENSE_HEAD.POST_PROCESSING.NMS_CONFIG")?;
    Ok(CenterHeadConfig {
        class_names_each_head: each,
        shared_conv_channel: r.usize(head, "SHARED_CONV_CHANNEL")?,
        use_bias_before_norm: r.bool_or(head, "USE_BIAS_BEFORE_NORM", false)?,
        num_hm_conv,
        head_order,
        feature_map_stride: r.usize(head, "TARGET_ASSIGNER_CONFIG.FEATURE_MAP_STRIDE")?,
        bn_eps: r.f64_or(head, "BN_EPS", 1e-5)? as f32,
        post: PostProcessing {
            score_thresh: r.f64(post_v, "SCORE_THRESH")? as f32,
            output_raw_score: false,
            nms,
            post_center_limit_range: Some(r.f32_array(post_v, "POST_CENTER_LIMIT_RANGE")?),
            max_obj_per_sample: r.usize(post_v, "MAX_OBJ_PER_SAMPLE")?,
        },
    })
}
