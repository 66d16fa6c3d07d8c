//! The cameras: an orbit camera for the perspective view and a top-down map camera.
//!
//! kiss3d's own cameras read input from its window, which we do not have, so the orbit camera is
//! driven from egui input (drag = orbit, right/middle or shift drag = pan, scroll or pinch =
//! zoom, double-click = reset) and handed to kiss3d as fixed matrices. The same matrices
//! project the box labels, which egui paints on top. The LiDAR frame is z-up with x forward
//! (KITTI).

use eframe::egui;
use kiss3d::camera::Camera3d;
use kiss3d::event::WindowEvent;
use kiss3d::glamx::glam::camera::rh::proj::directx;
use kiss3d::glamx::{Mat4, Pose3, Vec3, Vec4};
use kiss3d::window::Canvas;

use super::{Projection, View3d};

/// Orbit camera state for the perspective view (z up).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct OrbitCam {
    target: [f32; 3],
    /// Azimuth of the viewing direction around z; 0 looks along +x.
    pub(super) yaw: f32,
    /// Elevation of the eye above the target's horizontal plane, radians.
    pitch: f32,
    dist: f32,
}

impl OrbitCam {
    /// Behind and above the car, looking at (15, 0, 0).
    pub(super) const DEFAULT: OrbitCam = OrbitCam {
        target: [15.0, 0.0, 0.0],
        yaw: 0.0,
        pitch: 0.42,
        dist: 30.0,
    };
    const FOV_Y: f32 = 50.0 * std::f32::consts::PI / 180.0;
    const NEAR: f32 = 0.3;
    const FAR: f32 = 800.0;

    fn eye(&self) -> Vec3 {
        let (sp, cp) = self.pitch.sin_cos();
        let (sy, cy) = self.yaw.sin_cos();
        let dir = Vec3::new(cp * cy, cp * sy, -sp);
        Vec3::from(self.target) - dir * self.dist
    }
}

/// Top-down orthographic camera state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct BevCam {
    center: [f32; 2],
    /// Azimuth of the world direction that points up in the image; 0 = +x (forward).
    yaw: f32,
    /// Half of the visible height in metres.
    half_height: f32,
}

impl BevCam {
    /// 50 m of road ahead, the car near the bottom.
    pub(super) const DEFAULT: BevCam = BevCam {
        center: [20.0, 0.0],
        yaw: 0.0,
        half_height: 25.0,
    };
    const EYE_HEIGHT: f32 = 300.0;
    const NEAR: f32 = 1.0;
    const FAR: f32 = 700.0;
}

/// A camera with fixed matrices, handed to kiss3d for one render. kiss3d's own cameras need its
/// window's input; ours comes from egui.
pub(super) struct FrameCamera {
    eye: Vec3,
    view: Pose3,
    proj: Mat4,
    pub(super) proj_view: Mat4,
    inverse: Mat4,
    clip: (f32, f32),
}

impl Camera3d for FrameCamera {
    fn handle_event(&mut self, _canvas: &Canvas, _event: &WindowEvent) {}
    fn eye(&self) -> Vec3 {
        self.eye
    }
    fn view_transform(&self) -> Pose3 {
        self.view
    }
    fn transformation(&self) -> Mat4 {
        self.proj_view
    }
    fn inverse_transformation(&self) -> Mat4 {
        self.inverse
    }
    fn clip_planes(&self) -> (f32, f32) {
        self.clip
    }
    fn update(&mut self, _canvas: &Canvas) {}
    fn view_transform_pair(&self, _pass: usize) -> (Pose3, Mat4) {
        (self.view, self.proj)
    }
}

impl View3d {
    /// Camera matrices for an image of the given aspect ratio (width / height).
    pub(super) fn camera(&self, aspect: f32) -> FrameCamera {
        let aspect = if aspect.is_finite() && aspect > 0.0 {
            aspect
        } else {
            1.0
        };
        let (eye, view, proj, clip) = match self.projection {
            Projection::Perspective => {
                let o = &self.orbit;
                let eye = o.eye();
                let view = Pose3::look_at_rh(eye, Vec3::from(o.target), Vec3::Z);
                let proj =
                    directx::perspective(OrbitCam::FOV_Y, aspect, OrbitCam::NEAR, OrbitCam::FAR);
                (eye, view, proj, (OrbitCam::NEAR, OrbitCam::FAR))
            }
            Projection::BirdsEye => {
                let b = &self.bev;
                let eye = Vec3::new(b.center[0], b.center[1], BevCam::EYE_HEIGHT);
                let target = Vec3::new(b.center[0], b.center[1], 0.0);
                let (s, c) = b.yaw.sin_cos();
                let view = Pose3::look_at_rh(eye, target, Vec3::new(c, s, 0.0));
                let hh = b.half_height;
                let hw = hh * aspect;
                let proj = directx::orthographic(-hw, hw, -hh, hh, BevCam::NEAR, BevCam::FAR);
                (eye, view, proj, (BevCam::NEAR, BevCam::FAR))
            }
        };
        let proj_view = proj * view.to_mat4();
        FrameCamera {
            eye,
            view,
            proj,
            proj_view,
            inverse: proj_view.inverse(),
            clip,
        }
    }

    /// Projects a world point into `rect` with the camera used for that rect; `None` when the
    /// point is behind the camera or outside the depth range.
    pub(super) fn project(&self, p: [f32; 3], rect: egui::Rect) -> Option<egui::Pos2> {
        let cam = self.camera(rect.width() / rect.height());
        let clip = cam.proj_view * Vec4::new(p[0], p[1], p[2], 1.0);
        if clip.w <= 1e-6 {
            return None;
        }
        let ndc = clip / clip.w;
        if !(0.0..=1.0).contains(&ndc.z) {
            return None;
        }
        Some(egui::pos2(
            rect.left() + (ndc.x + 1.0) * 0.5 * rect.width(),
            rect.top() + (1.0 - ndc.y) * 0.5 * rect.height(),
        ))
    }

    /// Applies egui input on the view's response to the camera.
    pub(super) fn handle_input(
        &mut self,
        ui: &egui::Ui,
        response: &egui::Response,
        rect: egui::Rect,
    ) {
        if response.double_clicked() {
            self.reset_camera();
        }
        let shift = ui.input(|i| i.modifiers.shift);
        let delta = response.drag_delta();
        let pan = response.dragged_by(egui::PointerButton::Secondary)
            || response.dragged_by(egui::PointerButton::Middle)
            || (shift && response.dragged_by(egui::PointerButton::Primary));
        let orbit = !pan && response.dragged_by(egui::PointerButton::Primary);
        let h = rect.height().max(1.0);
        if delta != egui::Vec2::ZERO {
            if pan {
                self.pan(delta, h);
            } else if orbit {
                self.orbit_by(delta);
            }
        }
        if response.hovered() {
            let (scroll, zoom) = ui.input(|i| (i.smooth_scroll_delta.y, i.zoom_delta()));
            let factor = (-scroll * 0.002).exp() / zoom.max(1e-3);
            if (factor - 1.0).abs() > 1e-6 {
                self.zoom_by(factor);
            }
        }
    }

    /// Rotates the camera by a drag of `delta` logical pixels.
    fn orbit_by(&mut self, delta: egui::Vec2) {
        const RAD_PER_PX: f32 = 0.008;
        match self.projection {
            Projection::Perspective => {
                self.orbit.yaw -= delta.x * RAD_PER_PX;
                self.orbit.pitch = (self.orbit.pitch + delta.y * RAD_PER_PX).clamp(0.02, 1.55);
            }
            Projection::BirdsEye => self.bev.yaw -= delta.x * RAD_PER_PX,
        }
    }

    /// Moves the scene with the pointer by a drag of `delta` logical pixels in a view `h` tall.
    fn pan(&mut self, delta: egui::Vec2, h: f32) {
        match self.projection {
            Projection::Perspective => {
                let o = &mut self.orbit;
                let m_per_px = 2.0 * o.dist * (OrbitCam::FOV_Y * 0.5).tan() / h;
                let (sy, cy) = o.yaw.sin_cos();
                let forward = [cy, sy];
                let right = [sy, -cy];
                for k in 0..2 {
                    o.target[k] += (-right[k] * delta.x + forward[k] * delta.y) * m_per_px;
                }
            }
            Projection::BirdsEye => {
                let b = &mut self.bev;
                let m_per_px = 2.0 * b.half_height / h;
                let (s, c) = b.yaw.sin_cos();
                let up = [c, s];
                let right = [s, -c];
                for k in 0..2 {
                    b.center[k] += (-right[k] * delta.x + up[k] * delta.y) * m_per_px;
                }
            }
        }
    }

    /// Multiplies the viewing distance (or the map scale) by `factor` (< 1 zooms in).
    fn zoom_by(&mut self, factor: f32) {
        if !factor.is_finite() || factor <= 0.0 {
            return;
        }
        match self.projection {
            Projection::Perspective => {
                self.orbit.dist = (self.orbit.dist * factor).clamp(1.0, 400.0);
            }
            Projection::BirdsEye => {
                self.bev.half_height = (self.bev.half_height * factor).clamp(1.0, 300.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_project_in_front_only() {
        let v = View3d::new();
        let rect = egui::Rect::from_min_size(egui::pos2(10.0, 20.0), egui::vec2(640.0, 400.0));
        // The default camera looks at (15, 0, 0): it projects to the centre.
        let p = v
            .project([15.0, 0.0, 0.0], rect)
            .expect("target is visible");
        assert!(
            (p - rect.center()).length() < 1.0,
            "{p:?} vs {:?}",
            rect.center()
        );
        // Points further left (+y) are left in the image; higher points are higher.
        let left = v.project([15.0, 3.0, 0.0], rect).expect("visible");
        assert!(left.x < p.x);
        let up = v.project([15.0, 0.0, 2.0], rect).expect("visible");
        assert!(up.y < p.y);
        assert!(
            v.project([-60.0, 0.0, 0.0], rect).is_none(),
            "behind the camera"
        );

        let mut bev = View3d::new();
        bev.set_projection(Projection::BirdsEye);
        let c = bev.project([20.0, 0.0, 0.0], rect).expect("visible");
        assert!((c - rect.center()).length() < 1.0);
        let ahead = bev.project([30.0, 0.0, 0.0], rect).expect("visible");
        assert!(
            ahead.y < c.y && (ahead.x - c.x).abs() < 1e-3,
            "x forward points up"
        );
        let left = bev.project([20.0, 5.0, 0.0], rect).expect("visible");
        assert!(left.x < c.x, "+y is to the left");
    }

    #[test]
    fn camera_input_and_reset() {
        let mut v = View3d::new();
        v.orbit_by(egui::vec2(40.0, 10.0));
        v.pan(egui::vec2(5.0, 0.0), 400.0);
        v.zoom_by(0.5);
        assert_ne!(v.orbit, OrbitCam::DEFAULT);
        assert!(v.orbit.dist < OrbitCam::DEFAULT.dist);
        v.set_projection(Projection::BirdsEye);
        v.zoom_by(2.0);
        assert_ne!(v.bev, BevCam::DEFAULT);
        v.reset_camera();
        assert_eq!(v.bev, BevCam::DEFAULT);
        assert_ne!(
            v.orbit,
            OrbitCam::DEFAULT,
            "each projection keeps its own camera"
        );
        v.set_projection(Projection::Perspective);
        v.reset_camera();
        assert_eq!(v.orbit, OrbitCam::DEFAULT);
    }
}
