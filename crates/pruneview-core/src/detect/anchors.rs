//! Anchor boxes laid out exactly as OpenPCDet's `AnchorGenerator` and `AnchorHeadTemplate`
//! do, so that anchor `a` pairs with row `a` of the head's `(H*W*A, k)` output view.

use crate::model::config::AnchorClassConfig;

/// All anchors of a head, `[x, y, z, dx, dy, dz, heading]` (z = box centre).
#[derive(Clone, Debug)]
pub struct Anchors {
    pub boxes: Vec<[f32; 7]>,
    /// Anchors per BEV location (sum over classes of sizes x rotations x heights).
    pub per_location: usize,
    /// Feature map `(ny, nx)`.
    pub feature_map: (usize, usize),
}

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("anchor classes must share one feature map stride, rotation count and height count")]
    Mismatched,
    #[error("anchor class `{0}` has an empty size, rotation or height list")]
    Empty(String),
}

/// Positions along one axis as `torch.arange(start, end + 1e-5, step)` in float32, with the
/// step computed in float64 as numpy does for `float32 / int64`.
fn shifts(lo: f32, hi: f32, cells: usize, align_center: bool) -> Vec<f32> {
    let (lo, hi) = (lo as f64, hi as f64);
    let (step, offset) = if align_center {
        let s = (hi - lo) / cells as f64;
        (s, s / 2.0)
    } else {
        ((hi - lo) / (cells as f64 - 1.0).max(1.0), 0.0)
    };
    // numpy: float32 start + python 0 stays float32; end = float32 + 1e-5 in float32.
    let start = (lo as f32 + offset as f32) as f64;
    let end = (hi as f32 + 1e-5f32) as f64;
    let count = ((end - start) / step).ceil().max(0.0) as usize;
    (0..count)
        .map(|i| (start + i as f64 * step) as f32)
        .collect()
}

/// Generates the anchors for a BEV grid `grid_size = [nx, ny, nz]`.
///
/// Layout per class: `[nz_heights, ny, nx, n_sizes, n_rot, 7]`; classes are concatenated on
/// the size axis (`torch.cat(anchors, dim=-3)`), so per location the order is
/// class-major, then size, then rotation.
pub fn generate(
    classes: &[AnchorClassConfig],
    point_cloud_range: &[f32; 6],
    grid_size: [usize; 3],
) -> Result<Anchors, AnchorError> {
    let first = classes.first().ok_or(AnchorError::Mismatched)?;
    for c in classes {
        if c.sizes.is_empty() || c.rotations.is_empty() || c.bottom_heights.is_empty() {
            return Err(AnchorError::Empty(c.class_name.clone()));
        }
        if c.feature_map_stride != first.feature_map_stride
            || c.rotations.len() != first.rotations.len()
            || c.bottom_heights.len() != first.bottom_heights.len()
        {
            return Err(AnchorError::Mismatched);
        }
    }
    let stride = first.feature_map_stride.max(1);
    let (nx, ny) = (grid_size[0] / stride, grid_size[1] / stride);
    let n_rot = first.rotations.len();
    let n_heights = first.bottom_heights.len();
    let per_class: Vec<(Vec<f32>, Vec<f32>)> = classes
        .iter()
        .map(|c| {
            (
                shifts(
                    point_cloud_range[0],
                    point_cloud_range[3],
                    nx,
                    c.align_center,
                ),
                shifts(
                    point_cloud_range[1],
                    point_cloud_range[4],
                    ny,
                    c.align_center,
                ),
            )
        })
        .collect();
    let sizes_total: usize = classes.iter().map(|c| c.sizes.len()).sum();
    let xs_len = per_class[0].0.len();
    let ys_len = per_class[0].1.len();
    let mut boxes = Vec::with_capacity(n_heights * ys_len * xs_len * sizes_total * n_rot);
    for h in 0..n_heights {
        for iy in 0..ys_len {
            for ix in 0..xs_len {
                for (c, (xs, ys)) in classes.iter().zip(&per_class) {
                    for size in &c.sizes {
                        for &rot in &c.rotations {
                            let z = c.bottom_heights[h] + size[2] / 2.0;
                            boxes.push([xs[ix], ys[iy], z, size[0], size[1], size[2], rot]);
                        }
                    }
                }
            }
        }
    }
    Ok(Anchors {
        boxes,
        per_location: sizes_total * n_rot * n_heights,
        feature_map: (ys_len, xs_len),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, size: [f32; 3], bottom: f32) -> AnchorClassConfig {
        AnchorClassConfig {
            class_name: name.into(),
            sizes: vec![size],
            rotations: vec![0.0, 1.57],
            bottom_heights: vec![bottom],
            align_center: false,
            feature_map_stride: 2,
        }
    }

    #[test]
    fn kitti_pointpillars_layout() {
        let classes = [
            class("Car", [3.9, 1.6, 1.56], -1.78),
            class("Pedestrian", [0.8, 0.6, 1.73], -0.6),
            class("Cyclist", [1.76, 0.6, 1.73], -0.6),
        ];
        let a = generate(
            &classes,
            &[0.0, -39.68, -3.0, 69.12, 39.68, 1.0],
            [432, 496, 1],
        )
        .unwrap();
        assert_eq!(a.boxes.len(), 321_408);
        assert_eq!(a.per_location, 6);
        assert_eq!(a.feature_map, (248, 216));
        // Flat index ((y*216 + x)*3 + class)*2 + rot.
        let idx = |y: usize, x: usize, c: usize, r: usize| ((y * 216 + x) * 3 + c) * 2 + r;
        let b = a.boxes[idx(0, 0, 0, 0)];
        assert_eq!(b, [0.0, -39.68, -1.0, 3.9, 1.6, 1.56, 0.0]);
        let b = a.boxes[idx(247, 215, 2, 1)];
        assert!(
            (b[0] - 69.12).abs() < 1e-5 && (b[1] - 39.68).abs() < 1e-5,
            "{b:?}"
        );
        assert!((b[2] - 0.265).abs() < 1e-6 && b[6] == 1.57);
        let b = a.boxes[idx(1, 1, 1, 0)];
        assert!((b[0] - 0.321_488_4).abs() < 1e-5 && (b[1] - (-39.68 + 0.321_295_5)).abs() < 1e-5);
    }
}
