//! The scan as a kiss3d scene node.
//!
//! # Upload once
//! A scan becomes one persistent kiss3d scene node: a one-vertex point mesh, instanced once per
//! LiDAR point, with surface rendering off and a per-instance point colour. kiss3d keeps instance
//! buffers on the GPU and re-uploads them only when they are marked dirty, so a frame with an
//! unchanged scan uploads nothing but uniforms. A new scan rebuilds the node; a new colouring
//! rewrites only the colour buffer. (A plain many-vertex point mesh would not do: kiss3d 0.47
//! copies all of a mesh's vertices to the GPU again on every frame it draws points.) Boxes (12
//! edges each) change more often and are few, so they are drawn as immediate-mode lines each
//! render.

use std::cell::RefCell;
use std::rc::Rc;

use kiss3d::glamx::{Mat3, Vec2, Vec3};
use kiss3d::resource::GpuMesh3d;
use kiss3d::scene::{InstanceData3d, SceneNode3d};

use super::ColorBy;
use super::colors::{intensity_scale, kiss_color, point_color};

/// Rows that are drawn: at least x, y, z, all finite.
fn drawable_rows(points: &[f32], nf: usize) -> impl Iterator<Item = &[f32]> {
    let ok = nf >= 3;
    points
        .chunks_exact(nf.max(1))
        .filter(move |r| ok && r[..3].iter().all(|v| v.is_finite()))
}

/// Point colours in kiss3d's colour space, in [`drawable_rows`] order.
fn cloud_colors(points: &[f32], nf: usize, color_by: ColorBy) -> Vec<[f32; 4]> {
    let scale = intensity_scale(points, nf);
    drawable_rows(points, nf)
        .map(|r| {
            let c = kiss_color(point_color(r, color_by, scale));
            [c.r, c.g, c.b, c.a]
        })
        .collect()
}

/// Adds the scan to `scene` as one instanced point node (see the module docs).
pub(super) fn build_cloud(
    scene: &mut SceneNode3d,
    points: &[f32],
    nf: usize,
    color_by: ColorBy,
) -> Option<SceneNode3d> {
    let scale = intensity_scale(points, nf);
    let instances: Vec<InstanceData3d> = drawable_rows(points, nf)
        .map(|r| InstanceData3d {
            position: Vec3::new(r[0], r[1], r[2]),
            deformation: Mat3::IDENTITY,
            points_color: Some(kiss_color(point_color(r, color_by, scale))),
            ..Default::default()
        })
        .collect();
    if instances.is_empty() {
        return None;
    }
    // One vertex at the origin; the degenerate face only exists because kiss3d skips objects
    // without an index buffer. Surfaces are off, so it is never rasterised.
    let mesh = GpuMesh3d::new(
        vec![Vec3::ZERO],
        vec![[0, 0, 0]],
        Some(vec![Vec3::Z]),
        Some(vec![Vec2::ZERO]),
        false,
    );
    let mut node = scene.add_mesh(Rc::new(RefCell::new(mesh)), Vec3::ONE);
    node.set_surface_rendering_activation(false);
    node.set_lines_width(0.0, false);
    node.set_casts_shadows(false);
    node.set_points_size(2.0, false);
    node.set_instances(&instances);
    Some(node)
}

/// Rewrites only the per-point colour buffer of a cloud built by [`build_cloud`].
pub(super) fn recolor_cloud(cloud: &mut SceneNode3d, points: &[f32], nf: usize, color_by: ColorBy) {
    let colors = cloud_colors(points, nf, color_by);
    let mut data = cloud.data_mut();
    let instances = data.get_object_mut().instances().clone();
    let mut inst = instances.borrow_mut();
    if inst.len() == colors.len() {
        *inst.points_colors.data_mut() = Some(colors);
    }
}
