//! Configs of the reference models, `_BASE_CONFIG_` merging and the errors of bad configs.

use serde_json::Value;

use super::*;

const REF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/reference");

#[test]
fn kitti_pointpillars_config_resolves_base() {
    let path = PathBuf::from(REF).join("cfgs/kitti_models/pointpillar.yaml");
    let cfg = load_config(Some(&path), None).unwrap();
    assert_eq!(cfg.class_names, ["Car", "Pedestrian", "Cyclist"]);
    assert_eq!(cfg.data.grid_size, [432, 496, 1]);
    assert_eq!(cfg.data.point_cloud_range[1], -39.68);
    // From the base dataset config, not overridden by the model config.
    assert_eq!(cfg.data.used_features, ["x", "y", "z", "intensity"]);
    assert!(cfg.data.fov_points_only);
    let vox = cfg.data.voxelizer.as_ref().unwrap();
    assert_eq!((vox.max_points_per_voxel, vox.max_voxels), (32, 40000));
    let HeadConfig::Anchor(h) = &cfg.head else {
        panic!("expected an anchor head")
    };
    assert_eq!(h.anchors.len(), 3);
    assert_eq!(h.anchors[2].sizes, vec![[1.76, 0.6, 1.73]]);
    assert_eq!(h.post.nms.pre_max_size, 4096);
}

#[test]
fn nuscenes_centerpoint_config() {
    let path = PathBuf::from(REF).join("cfgs/nuscenes_models/cbgs_dyn_pp_centerpoint.yaml");
    let cfg = load_config(Some(&path), None).unwrap();
    assert_eq!(cfg.class_names.len(), 10);
    assert_eq!(cfg.data.grid_size, [512, 512, 1]);
    assert!(cfg.data.voxelizer.is_none());
    assert_eq!(cfg.vfe.kind, VfeKind::DynPillar);
    assert_eq!(cfg.backbone.upsample_strides, vec![0.5, 1.0, 2.0]);
    let HeadConfig::Center(h) = &cfg.head else {
        panic!("expected a center head")
    };
    assert_eq!(h.class_names_each_head.len(), 6);
    assert_eq!(h.head_order.last().unwrap().0, "hm");
    assert_eq!(h.post.nms.post_max_size, 83);
}

#[test]
fn voxel_model_configs() {
    let path = PathBuf::from(REF).join("cfgs/kitti_models/second.yaml");
    let cfg = load_config(Some(&path), None).unwrap();
    assert_eq!(cfg.model_name, "SECONDNet");
    assert_eq!(cfg.vfe.kind, VfeKind::Mean);
    assert_eq!(cfg.backbone_3d, Some(SparseBackboneKind::Plain8x));
    assert_eq!(cfg.data.grid_size, [1408, 1600, 40]);
    assert_eq!(cfg.num_bev_features, 256);
    let path = PathBuf::from(REF).join("cfgs/nuscenes_models/cbgs_voxel01_res3d_centerpoint.yaml");
    let cfg = load_config(Some(&path), None).unwrap();
    assert_eq!(cfg.backbone_3d, Some(SparseBackboneKind::Res8x));
    assert_eq!(cfg.data.used_features.len(), 5);
}

#[test]
fn mismatched_voxel_parts_are_clear_errors() {
    let path = PathBuf::from(REF).join("cfgs/kitti_models/second.yaml");
    let raw = load_yaml_merged(&path).unwrap();
    let err_of = |edit: &dyn Fn(&mut Value)| {
        let mut r = raw.clone();
        edit(&mut r);
        DetectorConfig::from_value(r, &path)
            .unwrap_err()
            .to_string()
    };
    let err = err_of(&|r| r["MODEL"]["BACKBONE_3D"]["NAME"] = Value::from("VoxelNeXt3D"));
    assert!(
        err.contains("second.yaml") && err.contains("VoxelNeXt3D"),
        "{err}"
    );
    let err = err_of(&|r| r["MODEL"]["MAP_TO_BEV"]["NAME"] = Value::from("PointPillarScatter"));
    assert!(err.contains("MeanVFE with PointPillarScatter"), "{err}");
    let err = err_of(&|r| {
        r["MODEL"].as_object_mut().unwrap().remove("BACKBONE_3D");
    });
    assert!(err.contains("HeightCompression"), "{err}");
}

#[test]
fn unknown_head_is_a_clear_error() {
    let path = PathBuf::from(REF).join("cfgs/kitti_models/pointpillar.yaml");
    let mut raw = load_yaml_merged(&path).unwrap();
    raw["MODEL"]["DENSE_HEAD"]["NAME"] = Value::from("AnchorHeadMulti");
    let err = DetectorConfig::from_value(raw, &path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("pointpillar.yaml"), "{err}");
    assert!(err.contains("AnchorHeadMulti"), "{err}");
}
