//! Procedural KITTI-like street scenes: a road with gentle slopes, kerbs and sidewalks, lane
//! markings, parked rows and traffic (cars, vans, trucks), pedestrians and cyclists, and the
//! static world (buildings, walls, poles, trees, bushes). All in the LiDAR frame (x forward,
//! y left, z up), the sensor at the origin [`SENSOR_HEIGHT`] above the road.

use std::f32::consts::{FRAC_PI_2, PI};

use super::geom::{Hit, Material, Primitive, Shape};
use crate::boxes::LidarBox;
use crate::rng::{Rng, mix64};

/// KITTI's Velodyne is mounted 1.73 m above the road.
pub const SENSOR_HEIGHT: f32 = 1.73;
/// Kerb height of the sidewalks.
pub const KERB_HEIGHT: f32 = 0.15;

/// What a scene object is; the first five get KITTI labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    Car,
    Van,
    Truck,
    Pedestrian,
    Cyclist,
    Building,
    Wall,
    Pole,
    Tree,
    Bush,
}

impl Class {
    /// KITTI label name, for the labelled classes.
    pub fn kitti_name(self) -> Option<&'static str> {
        match self {
            Class::Car => Some("Car"),
            Class::Van => Some("Van"),
            Class::Truck => Some("Truck"),
            Class::Pedestrian => Some("Pedestrian"),
            Class::Cyclist => Some("Cyclist"),
            _ => None,
        }
    }
}

/// One object: its class and its label box (LiDAR frame, gravity centre, OpenPCDet's
/// `[x, y, z, dx, dy, dz, heading]`). Its parts are the scene primitives whose `owner` is the
/// object's index.
#[derive(Clone, Debug, PartialEq)]
pub struct SceneObject {
    pub class: Class,
    pub lidar_box: LidarBox,
}

/// The road and the ground it lies on. Road coordinates: u along the road, s lateral (left
/// positive) from the road centre line; the sensor is at u = 0, s = `ego_s`.
#[derive(Clone, Debug, PartialEq)]
pub struct Ground {
    /// Road direction (yaw in the LiDAR frame).
    pub road_yaw: f32,
    /// Lateral position of the sensor on the road.
    pub ego_s: f32,
    /// Half the kerb-to-kerb width.
    pub half_width: f32,
    /// Longitudinal and lateral slope (rise per metre) and curvature (per metre squared).
    pub slope_u: f32,
    pub slope_s: f32,
    pub curvature: f32,
    /// Sidewalk width beyond each kerb (then grass).
    pub sidewalk: f32,
    /// Lateral positions of painted lane lines (dashed unless the road edge).
    pub lane_lines: Vec<f32>,
    cos: f32,
    sin: f32,
}

const ASPHALT: Material = Material::new(0.18, 0.02);
const PAVEMENT: Material = Material::new(0.30, 0.01);
const GRASS: Material = Material::new(0.42, 0.03);
const PAINT: Material = Material::new(0.85, 0.0);

impl Ground {
    /// Road coordinates (u, s) of a LiDAR-frame point.
    pub fn to_road(&self, x: f32, y: f32) -> (f32, f32) {
        (
            x * self.cos + y * self.sin,
            -x * self.sin + y * self.cos + self.ego_s,
        )
    }

    /// LiDAR-frame (x, y) of road coordinates.
    pub fn to_world(&self, u: f32, s: f32) -> (f32, f32) {
        let s = s - self.ego_s;
        (u * self.cos - s * self.sin, u * self.sin + s * self.cos)
    }

    /// Height of the road surface (no kerb) at road coordinates.
    fn base(&self, u: f32, s: f32) -> f32 {
        -SENSOR_HEIGHT + self.slope_u * u + self.slope_s * (s - self.ego_s) + self.curvature * u * u
    }

    /// Height of the ground (with kerbs) under a LiDAR-frame point.
    pub fn height_at(&self, x: f32, y: f32) -> f32 {
        let (u, s) = self.to_road(x, y);
        let kerb = if s.abs() > self.half_width {
            KERB_HEIGHT
        } else {
            0.0
        };
        self.base(u, s) + kerb
    }

    /// Nearest hit of a ray from the origin with the road, the sidewalks or the kerbs.
    pub fn intersect(&self, d: [f32; 3]) -> Option<(Hit, Material)> {
        let du = d[0] * self.cos + d[1] * self.sin;
        let ds = -d[0] * self.sin + d[1] * self.cos;
        let a = self.curvature * du * du;
        let b = self.slope_u * du + self.slope_s * ds - d[2];
        let mut best: Option<(f32, bool)> = None; // (t, is_kerb_face)
        for (level, on_road) in [(0.0, true), (KERB_HEIGHT, false)] {
            if let Some(t) = smallest_root(a, b, -SENSOR_HEIGHT + level) {
                let s = t * ds + self.ego_s;
                if (s.abs() <= self.half_width) == on_road && best.is_none_or(|(bt, _)| t < bt) {
                    best = Some((t, false));
                }
            }
        }
        if ds.abs() > 1e-6 {
            for edge in [-self.half_width, self.half_width] {
                let t = (edge - self.ego_s) / ds;
                if t > 0.0 && best.is_none_or(|(bt, _)| t < bt) {
                    let u = t * du;
                    let z = t * d[2] - self.base(u, edge);
                    if (0.0..=KERB_HEIGHT).contains(&z) {
                        best = Some((t, true));
                    }
                }
            }
        }
        let (t, kerb) = best?;
        let (u, s) = (t * du, t * ds + self.ego_s);
        let (normal, material) = if kerb {
            let n = -s.signum();
            ([-n * self.sin, n * self.cos, 0.0], PAVEMENT)
        } else {
            let gu = self.slope_u + 2.0 * self.curvature * u;
            let gs = self.slope_s;
            // Gradient in road coordinates to the LiDAR frame.
            let gx = gu * self.cos - gs * self.sin;
            let gy = gu * self.sin + gs * self.cos;
            let n = super::geom::normalize([-gx, -gy, 1.0]);
            let m = if s.abs() > self.half_width + self.sidewalk {
                GRASS
            } else if s.abs() > self.half_width {
                PAVEMENT
            } else if self.on_paint(u, s) {
                PAINT
            } else {
                ASPHALT
            };
            (n, m)
        };
        Some((Hit { t, normal }, material))
    }

    fn on_paint(&self, u: f32, s: f32) -> bool {
        self.lane_lines.iter().enumerate().any(|(i, &l)| {
            let edge = i == 0 || i + 1 == self.lane_lines.len();
            (s - l).abs() < 0.07 && (edge || u.rem_euclid(9.0) < 3.0)
        })
    }
}

/// Smallest positive root of a t^2 + b t + c = 0.
fn smallest_root(a: f32, b: f32, c: f32) -> Option<f32> {
    if a.abs() < 1e-9 {
        if b.abs() < 1e-12 {
            return None;
        }
        let t = -c / b;
        return (t > 0.0).then_some(t);
    }
    let disc = b * b - 4.0 * a * c;
    if disc < 0.0 {
        return None;
    }
    let q = -0.5 * (b + b.signum() * disc.sqrt());
    let (t1, t2) = (q / a, if q != 0.0 { c / q } else { f32::INFINITY });
    let (lo, hi) = if t1 < t2 { (t1, t2) } else { (t2, t1) };
    if lo > 0.0 {
        Some(lo)
    } else if hi > 0.0 && hi.is_finite() {
        Some(hi)
    } else {
        None
    }
}

/// A generated scene: ground, objects and their primitives; deterministic from its seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    pub seed: u64,
    pub index: u64,
    pub ground: Ground,
    pub objects: Vec<SceneObject>,
    /// Solid parts; `owner` indexes `objects`.
    pub primitives: Vec<Primitive>,
}

impl Scene {
    /// A seed for the scan noise of this scene.
    pub fn noise_seed(&self) -> u64 {
        mix64(self.seed ^ mix64(self.index ^ 0xA11CE))
    }

    /// Nearest hit along a ray from `o` (unit direction `d`) with any primitive not owned by
    /// `skip`, closer than `t_max` (brute force with bounding-sphere culling).
    pub fn blocked(&self, o: [f32; 3], d: [f32; 3], t_max: f32, skip: u32) -> bool {
        self.primitives.iter().any(|p| {
            if p.owner == skip {
                return false;
            }
            let v = [p.center[0] - o[0], p.center[1] - o[1], p.center[2] - o[2]];
            let along = super::geom::dot(v, d);
            if along + p.radius < 0.0 || along - p.radius > t_max {
                return false;
            }
            let perp2 = super::geom::dot(v, v) - along * along;
            if perp2 > p.radius * p.radius {
                return false;
            }
            p.intersect(o, d).is_some_and(|h| h.t < t_max)
        })
    }
}

const PAINT_COLOURS: [f32; 6] = [0.08, 0.15, 0.25, 0.35, 0.5, 0.6];
const GLASS: Material = Material::new(0.06, 0.35);
const TYRE: Material = Material::new(0.05, 0.05);
const CHROME: Material = Material::new(0.55, 0.0);

struct Builder<'a> {
    rng: Rng,
    ground: &'a Ground,
    objects: Vec<SceneObject>,
    primitives: Vec<Primitive>,
    /// Footprints (x, y, radius) of placed movable objects, for overlap checks.
    placed: Vec<(f32, f32, f32)>,
}

impl Builder<'_> {
    fn free(&self, x: f32, y: f32, r: f32) -> bool {
        x.hypot(y) > r + 2.0
            && self
                .placed
                .iter()
                .all(|&(px, py, pr)| (px - x).hypot(py - y) > pr + r + 0.2)
    }

    /// Adds an object whose parts are given in its local frame (x forward, z up from the
    /// ground); returns false if its footprint overlaps.
    fn add(
        &mut self,
        class: Class,
        (u, s, heading): (f32, f32, f32),
        dims: [f32; 3],
        parts: &[(Shape, [f32; 3], Material)],
        movable: bool,
    ) -> bool {
        let (x, y) = self.ground.to_world(u, s);
        let yaw = heading + self.ground.road_yaw;
        let r = 0.5 * dims[0].hypot(dims[1]);
        if movable && !self.free(x, y, r) {
            return false;
        }
        let z0 = self.ground.height_at(x, y);
        let owner = self.objects.len() as u32;
        let (sn, cs) = yaw.sin_cos();
        for &(shape, c, m) in parts {
            let center = [
                x + c[0] * cs - c[1] * sn,
                y + c[0] * sn + c[1] * cs,
                z0 + c[2],
            ];
            self.primitives
                .push(Primitive::new(shape, center, yaw, m, owner));
        }
        let yaw = (yaw + PI).rem_euclid(2.0 * PI) - PI;
        self.objects.push(SceneObject {
            class,
            lidar_box: [x, y, z0 + dims[2] / 2.0, dims[0], dims[1], dims[2], yaw],
        });
        if movable {
            self.placed.push((x, y, r));
        }
        true
    }

    fn paint(&mut self) -> Material {
        let i = self.rng.int(0, PAINT_COLOURS.len() as i64 - 1) as usize;
        Material::new(PAINT_COLOURS[i], 0.02 + 0.08 * (1.0 - PAINT_COLOURS[i]))
    }

    fn vehicle(&mut self, class: Class, pose: (f32, f32, f32)) -> bool {
        let r = &mut self.rng;
        let (l, w, h) = match class {
            Class::Van => (r.normal(5.1, 0.35), r.normal(1.9, 0.1), r.normal(2.1, 0.15)),
            Class::Truck => (r.normal(10.0, 2.5), r.normal(2.5, 0.1), r.normal(3.3, 0.35)),
            _ => (r.normal(3.9, 0.4), r.normal(1.6, 0.1), r.normal(1.56, 0.15)),
        };
        let (l, w, h) = (l.max(2.8), w.clamp(1.3, 2.7), h.clamp(1.2, 4.2));
        let body = self.paint();
        let box_ = |x0: f32, x1: f32, y: f32, z0: f32, z1: f32, m: Material| {
            (
                Shape::Box {
                    half: [(x1 - x0) / 2.0, y / 2.0, (z1 - z0) / 2.0],
                },
                [(x0 + x1) / 2.0, 0.0, (z0 + z1) / 2.0],
                m,
            )
        };
        let mut parts = Vec::new();
        let wheel_r = match class {
            Class::Truck => 0.5,
            Class::Van => 0.36,
            _ => 0.32,
        };
        let axles: Vec<f32> = match class {
            Class::Truck => vec![l / 2.0 - 1.2, -l / 2.0 + 1.6, -l / 2.0 + 2.9],
            _ => vec![l / 2.0 - 0.85, -l / 2.0 + 0.9],
        };
        for &ax in &axles {
            for side in [-1.0, 1.0] {
                parts.push((
                    Shape::CylY {
                        r: wheel_r,
                        half_w: 0.11,
                    },
                    [ax, side * (w / 2.0 - 0.13), wheel_r],
                    TYRE,
                ));
            }
        }
        let clear = wheel_r * 0.7;
        match class {
            Class::Car => {
                let belt = 0.62 * h;
                parts.push(box_(-l / 2.0, l / 2.0, w, clear, belt - 0.12, body));
                // Hood and boot slope: a slightly narrower layer below the windows.
                parts.push(box_(
                    -l / 2.0 + 0.1,
                    l / 2.0 - 0.15,
                    w * 0.97,
                    belt - 0.12,
                    belt,
                    body,
                ));
                // Glass house and roof.
                parts.push(box_(-0.33 * l, 0.22 * l, w * 0.9, belt, 0.86 * h, GLASS));
                parts.push(box_(-0.27 * l, 0.13 * l, w * 0.84, 0.86 * h, h, body));
                parts.push(box_(
                    l / 2.0 - 0.05,
                    l / 2.0,
                    w * 0.5,
                    clear + 0.1,
                    clear + 0.25,
                    CHROME,
                ));
            }
            Class::Van => {
                let hood = 0.9;
                parts.push(box_(l / 2.0 - hood, l / 2.0, w, clear, 0.5 * h, body));
                parts.push(box_(
                    l / 2.0 - hood - 0.4,
                    l / 2.0 - hood,
                    w * 0.95,
                    0.5 * h,
                    0.82 * h,
                    GLASS,
                ));
                parts.push(box_(-l / 2.0, l / 2.0 - hood, w, clear, 0.5 * h, body));
                parts.push(box_(-l / 2.0, l / 2.0 - hood - 0.4, w, 0.5 * h, h, body));
            }
            _ => {
                let cab = 2.3;
                parts.push(box_(
                    l / 2.0 - cab,
                    l / 2.0,
                    w * 0.98,
                    clear,
                    0.55 * h,
                    body,
                ));
                parts.push(box_(
                    l / 2.0 - cab,
                    l / 2.0,
                    w * 0.98,
                    0.55 * h,
                    0.78 * h,
                    GLASS,
                ));
                parts.push(box_(
                    l / 2.0 - cab + 0.2,
                    l / 2.0 - 0.2,
                    w * 0.95,
                    0.78 * h,
                    0.85 * h,
                    body,
                ));
                parts.push(box_(
                    -l / 2.0,
                    l / 2.0 - cab - 0.3,
                    w * 0.6,
                    clear,
                    clear + 0.3,
                    TYRE,
                ));
                let cargo = Material::new(self.rng.range(0.2, 0.6), 0.01);
                parts.push(box_(
                    -l / 2.0,
                    l / 2.0 - cab - 0.3,
                    w,
                    clear + 0.3,
                    h,
                    cargo,
                ));
            }
        }
        self.add(class, pose, [l, w, h], &parts, true)
    }

    fn pedestrian(&mut self, pose: (f32, f32, f32)) -> bool {
        let r = &mut self.rng;
        let h = r.normal(1.76, 0.1).clamp(1.4, 2.05);
        let (l, w) = (
            r.normal(0.8, 0.08).clamp(0.5, 1.1),
            r.normal(0.6, 0.06).clamp(0.45, 0.8),
        );
        let stride = r.range(-0.2, 0.2);
        let cloth = Material::new(r.range(0.1, 0.55), 0.02);
        let skin = Material::new(0.4, 0.02);
        let leg = 0.47 * h;
        let mut parts = Vec::new();
        for (side, dx) in [(-1.0, stride), (1.0, -stride)] {
            parts.push((
                Shape::CylZ {
                    r: 0.075,
                    half_h: leg / 2.0,
                },
                [dx, side * 0.1, leg / 2.0],
                cloth,
            ));
        }
        parts.push((
            Shape::Ellipsoid {
                radii: [0.15, 0.21, 0.17 * h],
            },
            [0.0, 0.0, 0.65 * h],
            cloth,
        ));
        for side in [-1.0, 1.0] {
            parts.push((
                Shape::CylZ {
                    r: 0.05,
                    half_h: 0.15 * h,
                },
                [-stride * 0.5 * side, side * 0.25, 0.66 * h],
                cloth,
            ));
        }
        parts.push((
            Shape::Ellipsoid {
                radii: [0.1, 0.09, 0.115],
            },
            [0.0, 0.0, h - 0.115],
            skin,
        ));
        self.add(Class::Pedestrian, pose, [l, w, h], &parts, true)
    }

    fn cyclist(&mut self, pose: (f32, f32, f32)) -> bool {
        let r = &mut self.rng;
        let h = r.normal(1.73, 0.08).clamp(1.5, 1.95);
        let l = r.normal(1.76, 0.1).clamp(1.5, 2.0);
        let w = r.normal(0.6, 0.05).clamp(0.45, 0.8);
        let cloth = Material::new(r.range(0.1, 0.6), 0.02);
        let frame = Material::new(0.45, 0.05);
        let wr = 0.33;
        let mut parts = Vec::new();
        for x in [l / 2.0 - wr, -l / 2.0 + wr] {
            parts.push((
                Shape::CylY {
                    r: wr,
                    half_w: 0.025,
                },
                [x, 0.0, wr],
                TYRE,
            ));
        }
        parts.push((
            Shape::Box {
                half: [l / 2.0 - wr, 0.03, 0.18],
            },
            [0.0, 0.0, wr + 0.2],
            frame,
        ));
        for side in [-1.0, 1.0] {
            parts.push((
                Shape::CylZ {
                    r: 0.07,
                    half_h: 0.3,
                },
                [-0.05, side * 0.13, 0.72],
                cloth,
            ));
        }
        parts.push((
            Shape::Box {
                half: [0.22, 0.19, 0.27],
            },
            [0.05, 0.0, h - 0.5],
            cloth,
        ));
        parts.push((
            Shape::Ellipsoid {
                radii: [0.11, 0.1, 0.12],
            },
            [0.2, 0.0, h - 0.12],
            Material::new(0.5, 0.02),
        ));
        self.add(Class::Cyclist, pose, [l, w, h], &parts, true)
    }

    fn tree(&mut self, u: f32, s: f32) {
        let r = &mut self.rng;
        let trunk_h = r.range(1.8, 3.5);
        let crown = r.range(1.2, 3.0);
        let crown_h = crown * r.range(1.0, 1.6);
        let bark = Material::new(0.35, 0.02);
        let leaves = Material::new(0.5, 0.25);
        let parts = [
            (
                Shape::CylZ {
                    r: r.range(0.1, 0.25),
                    half_h: trunk_h / 2.0 + 0.3,
                },
                [0.0, 0.0, trunk_h / 2.0 + 0.3],
                bark,
            ),
            (
                Shape::Ellipsoid {
                    radii: [crown, crown, crown_h],
                },
                [0.0, 0.0, trunk_h + crown_h * 0.8],
                leaves,
            ),
        ];
        self.add(
            Class::Tree,
            (u, s, 0.0),
            [2.0 * crown, 2.0 * crown, trunk_h + crown_h * 1.8],
            &parts,
            false,
        );
    }
}

/// Generates scene `index` of the sequence seeded by `seed`.
pub fn generate_scene(seed: u64, index: u64) -> Scene {
    let mut rng = Rng::new(mix64(seed) ^ mix64(index.wrapping_add(0x51CE)));
    let lanes = rng.int(1, 2) as f32;
    let parking = rng.chance(0.75);
    let park_w = if parking { 2.2 } else { 0.4 };
    let half_width = lanes * 3.3 + park_w;
    let ego_s = -half_width + park_w + 1.65 + rng.range(-0.3, 0.3);
    let road_yaw = rng.normal(0.0, 0.04);
    let mut lane_lines = vec![-half_width + park_w];
    for i in 1..(2 * lanes as i64) {
        lane_lines.push(-half_width + park_w + 3.3 * i as f32);
    }
    lane_lines.push(half_width - park_w);
    let (sin, cos) = road_yaw.sin_cos();
    let ground = Ground {
        road_yaw,
        ego_s,
        half_width,
        slope_u: rng.normal(0.0, 0.012),
        slope_s: rng.normal(0.0, 0.006),
        curvature: rng.normal(0.0, 0.00008),
        sidewalk: rng.range(2.0, 4.0),
        lane_lines,
        cos,
        sin,
    };
    let mut b = Builder {
        rng,
        ground: &ground,
        objects: Vec::new(),
        primitives: Vec::new(),
        placed: Vec::new(),
    };
    let vehicle_class = |r: &mut Rng| {
        let p = r.f();
        if p < 0.82 {
            Class::Car
        } else if p < 0.94 {
            Class::Van
        } else {
            Class::Truck
        }
    };
    // Parked rows along the kerbs.
    if parking {
        for side in [-1.0f32, 1.0] {
            if !b.rng.chance(0.85) {
                continue;
            }
            let mut u = b.rng.range(-50.0, -35.0);
            let flip = if side > 0.0 && b.rng.chance(0.5) {
                PI
            } else {
                0.0
            };
            while u < 75.0 {
                let class = vehicle_class(&mut b.rng);
                let s = side * (half_width - 1.1 + b.rng.range(-0.15, 0.1));
                let heading = flip + b.rng.normal(0.0, 0.04);
                let len = match class {
                    Class::Truck => 10.0,
                    Class::Van => 5.1,
                    _ => 4.0,
                };
                if b.rng.chance(0.8) {
                    b.vehicle(class, (u + len / 2.0, s, heading));
                }
                u += len + b.rng.range(0.6, 5.0);
            }
        }
    }
    // Traffic in the lanes.
    for i in 0..(2 * lanes as i64) {
        let right = i < lanes as i64;
        let s = if right {
            -half_width + park_w + 1.65 + 3.3 * i as f32
        } else {
            half_width - park_w - 1.65 - 3.3 * (i - lanes as i64) as f32
        };
        let n = b.rng.int(0, 4);
        for _ in 0..n {
            let u = b.rng.range(-60.0, 80.0);
            if (s - ego_s).abs() < 1.0 && u.abs() < 8.0 {
                continue;
            }
            let heading = if right { 0.0 } else { PI } + b.rng.normal(0.0, 0.03);
            let class = vehicle_class(&mut b.rng);
            let s = s + b.rng.range(-0.4, 0.4);
            b.vehicle(class, (u, s, heading));
        }
    }
    // Pedestrians on the sidewalks and crossing.
    let sw = ground.sidewalk;
    for _ in 0..b.rng.int(0, 10) {
        let u = b.rng.range(-30.0, 60.0);
        let crossing = b.rng.chance(0.15);
        let (s, heading) = if crossing {
            (
                b.rng.range(-half_width, half_width),
                FRAC_PI_2 * if b.rng.chance(0.5) { 1.0 } else { -1.0 },
            )
        } else {
            let side = if b.rng.chance(0.5) { 1.0 } else { -1.0 };
            let h = if b.rng.chance(0.6) { 0.0 } else { PI };
            (
                side * (half_width + b.rng.range(0.4, sw - 0.3)),
                h + b.rng.normal(0.0, 0.3),
            )
        };
        b.pedestrian((u, s, heading));
    }
    for _ in 0..b.rng.int(0, 3) {
        let u = b.rng.range(-20.0, 60.0);
        let (s, heading) = if b.rng.chance(0.7) {
            (-half_width + park_w + 0.8, b.rng.normal(0.0, 0.05))
        } else {
            (half_width - park_w - 0.8, PI + b.rng.normal(0.0, 0.05))
        };
        b.cyclist((u, s, heading));
    }
    // Static world: poles and trees on the sidewalks, then buildings, walls and bushes.
    for side in [-1.0f32, 1.0] {
        let mut u = b.rng.range(-80.0, -60.0);
        while u < 100.0 {
            let s = side * (half_width + 0.45);
            let (x, y) = ground.to_world(u, s);
            if b.free(x, y, 0.3) {
                let h = b.rng.range(4.0, 8.0);
                let m = Material::new(0.5, 0.02);
                let shape = Shape::CylZ {
                    r: b.rng.range(0.07, 0.15),
                    half_h: h / 2.0,
                };
                b.add(
                    Class::Pole,
                    (u, s, 0.0),
                    [0.3, 0.3, h],
                    &[(shape, [0.0, 0.0, h / 2.0], m)],
                    false,
                );
            }
            u += b.rng.range(18.0, 40.0);
        }
        if b.rng.chance(0.65) {
            let mut u = b.rng.range(-80.0, -65.0);
            while u < 100.0 {
                let s = side * (half_width + b.rng.range(0.8, (sw - 0.5).max(0.9)));
                let (x, y) = ground.to_world(u, s);
                if b.free(x, y, 0.5) {
                    b.tree(u, s);
                }
                u += b.rng.range(7.0, 20.0);
            }
        }
        let mut u = b.rng.range(-100.0, -80.0);
        while u < 110.0 {
            let len = b.rng.range(8.0, 32.0);
            let setback = half_width + sw + b.rng.range(0.0, 6.0);
            let kind = b.rng.f();
            if kind < 0.6 {
                let h = b.rng.range(5.0, 18.0);
                let depth = b.rng.range(8.0, 14.0);
                let m = Material::new(b.rng.range(0.2, 0.55), 0.02);
                let shape = Shape::Box {
                    half: [len / 2.0, depth / 2.0, h / 2.0 + 0.5],
                };
                let s = side * (setback + depth / 2.0);
                b.add(
                    Class::Building,
                    (u + len / 2.0, s, 0.0),
                    [len, depth, h],
                    &[(shape, [0.0, 0.0, h / 2.0 - 0.5], m)],
                    false,
                );
            } else if kind < 0.8 {
                let h = b.rng.range(0.8, 2.5);
                let m = Material::new(b.rng.range(0.2, 0.5), 0.02);
                let shape = Shape::Box {
                    half: [len / 2.0, 0.15, h / 2.0 + 0.2],
                };
                b.add(
                    Class::Wall,
                    (u + len / 2.0, side * setback, 0.0),
                    [len, 0.3, h],
                    &[(shape, [0.0, 0.0, h / 2.0 - 0.2], m)],
                    false,
                );
            } else {
                let mut v = u;
                while v < u + len {
                    let rad = b.rng.range(0.5, 1.4);
                    let hr = rad * b.rng.range(0.5, 0.9);
                    let shape = Shape::Ellipsoid {
                        radii: [rad, rad, hr],
                    };
                    let s = side * (setback + rad);
                    b.add(
                        Class::Bush,
                        (v, s, 0.0),
                        [2.0 * rad, 2.0 * rad, hr],
                        &[(shape, [0.0, 0.0, hr * 0.6], Material::new(0.45, 0.2))],
                        false,
                    );
                    v += rad * 2.0 + b.rng.range(0.0, 3.0);
                }
            }
            u += len + b.rng.range(0.0, 10.0);
        }
    }
    let Builder {
        objects,
        primitives,
        ..
    } = b;
    Scene {
        seed,
        index,
        ground,
        objects,
        primitives,
    }
}
