//! Analytic ray-primitive intersection: oriented boxes, cylinders (vertical, or horizontal
//! along the local y axis for wheels) and ellipsoids, each posed by a centre and a yaw.

/// Surface material: how bright a return is and how often it is lost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Material {
    /// Diffuse reflectivity in [0, 1] (KITTI reflectance at normal incidence).
    pub reflectivity: f32,
    /// Extra probability of no return (glass, dark paint).
    pub dropout: f32,
}

impl Material {
    pub const fn new(reflectivity: f32, dropout: f32) -> Material {
        Material {
            reflectivity,
            dropout,
        }
    }
}

/// Shape in the primitive's local frame (x forward, y left, z up, centred).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    /// Box with half extents.
    Box { half: [f32; 3] },
    /// Cylinder with its axis along local z.
    CylZ { r: f32, half_h: f32 },
    /// Cylinder with its axis along local y (a wheel).
    CylY { r: f32, half_w: f32 },
    /// Axis-aligned ellipsoid with these radii.
    Ellipsoid { radii: [f32; 3] },
}

/// One solid part of the scene, in the LiDAR frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Primitive {
    pub shape: Shape,
    pub center: [f32; 3],
    pub yaw: f32,
    pub material: Material,
    /// Index of the scene object this part belongs to.
    pub owner: u32,
    cos: f32,
    sin: f32,
    /// Bounding-sphere radius.
    pub radius: f32,
}

/// A ray hit: distance along the (unit) ray and the world-frame unit normal.
#[derive(Clone, Copy, Debug)]
pub struct Hit {
    pub t: f32,
    pub normal: [f32; 3],
}

const EPS: f32 = 1e-4;

impl Primitive {
    pub fn new(shape: Shape, center: [f32; 3], yaw: f32, material: Material, owner: u32) -> Self {
        let radius = match shape {
            Shape::Box { half } => {
                (half[0] * half[0] + half[1] * half[1] + half[2] * half[2]).sqrt()
            }
            Shape::CylZ { r, half_h } => (r * r + half_h * half_h).sqrt(),
            Shape::CylY { r, half_w } => (r * r + half_w * half_w).sqrt(),
            Shape::Ellipsoid { radii } => radii[0].max(radii[1]).max(radii[2]),
        };
        let (sin, cos) = yaw.sin_cos();
        Primitive {
            shape,
            center,
            yaw,
            material,
            owner,
            cos,
            sin,
            radius,
        }
    }

    /// Nearest hit of the ray `o + t d` (d unit) with `t > EPS`, if any.
    pub fn intersect(&self, o: [f32; 3], d: [f32; 3]) -> Option<Hit> {
        let (c, s) = (self.cos, self.sin);
        let p = [
            o[0] - self.center[0],
            o[1] - self.center[1],
            o[2] - self.center[2],
        ];
        let lo = [c * p[0] + s * p[1], -s * p[0] + c * p[1], p[2]];
        let ld = [c * d[0] + s * d[1], -s * d[0] + c * d[1], d[2]];
        let (t, n) = match self.shape {
            Shape::Box { half } => ray_box(lo, ld, half)?,
            Shape::CylZ { r, half_h } => ray_cyl_z(lo, ld, r, half_h)?,
            Shape::CylY { r, half_w } => {
                // Swap y and z, intersect a z-cylinder, swap the normal back.
                let (t, n) = ray_cyl_z([lo[0], lo[2], lo[1]], [ld[0], ld[2], ld[1]], r, half_w)?;
                (t, [n[0], n[2], n[1]])
            }
            Shape::Ellipsoid { radii } => ray_ellipsoid(lo, ld, radii)?,
        };
        let normal = [c * n[0] - s * n[1], s * n[0] + c * n[1], n[2]];
        Some(Hit { t, normal })
    }

    /// Whether a local-frame point lies inside (used by tests and labels).
    pub fn contains(&self, q: [f32; 3]) -> bool {
        let p = [
            q[0] - self.center[0],
            q[1] - self.center[1],
            q[2] - self.center[2],
        ];
        let l = [
            self.cos * p[0] + self.sin * p[1],
            -self.sin * p[0] + self.cos * p[1],
            p[2],
        ];
        match self.shape {
            Shape::Box { half } => (0..3).all(|i| l[i].abs() <= half[i]),
            Shape::CylZ { r, half_h } => l[0] * l[0] + l[1] * l[1] <= r * r && l[2].abs() <= half_h,
            Shape::CylY { r, half_w } => l[0] * l[0] + l[2] * l[2] <= r * r && l[1].abs() <= half_w,
            Shape::Ellipsoid { radii } => {
                (0..3).map(|i| (l[i] / radii[i]).powi(2)).sum::<f32>() <= 1.0
            }
        }
    }
}

fn ray_box(o: [f32; 3], d: [f32; 3], half: [f32; 3]) -> Option<(f32, [f32; 3])> {
    let mut tmin = f32::NEG_INFINITY;
    let mut tmax = f32::INFINITY;
    let mut axis = 0;
    for i in 0..3 {
        if d[i].abs() < 1e-9 {
            if o[i].abs() > half[i] {
                return None;
            }
            continue;
        }
        let inv = 1.0 / d[i];
        let t1 = (-half[i] - o[i]) * inv;
        let t2 = (half[i] - o[i]) * inv;
        let (near, far) = if t1 < t2 { (t1, t2) } else { (t2, t1) };
        if near > tmin {
            tmin = near;
            axis = i;
        }
        tmax = tmax.min(far);
        if tmax < tmin {
            return None;
        }
    }
    if tmin <= EPS {
        return None;
    }
    let mut n = [0.0; 3];
    n[axis] = -d[axis].signum();
    Some((tmin, n))
}

fn ray_cyl_z(o: [f32; 3], d: [f32; 3], r: f32, hh: f32) -> Option<(f32, [f32; 3])> {
    let mut best: Option<(f32, [f32; 3])> = None;
    let a = d[0] * d[0] + d[1] * d[1];
    if a > 1e-12 {
        let b = o[0] * d[0] + o[1] * d[1];
        let c = o[0] * o[0] + o[1] * o[1] - r * r;
        let disc = b * b - a * c;
        if disc < 0.0 {
            return None;
        }
        let t = (-b - disc.sqrt()) / a;
        if t > EPS {
            let z = o[2] + t * d[2];
            if z.abs() <= hh {
                let (x, y) = (o[0] + t * d[0], o[1] + t * d[1]);
                best = Some((t, [x / r, y / r, 0.0]));
            }
        }
    }
    if d[2].abs() > 1e-9 {
        for cap in [-hh, hh] {
            let t = (cap - o[2]) / d[2];
            if t > EPS && best.is_none_or(|(bt, _)| t < bt) {
                let (x, y) = (o[0] + t * d[0], o[1] + t * d[1]);
                if x * x + y * y <= r * r {
                    best = Some((t, [0.0, 0.0, cap.signum()]));
                }
            }
        }
    }
    best
}

fn ray_ellipsoid(o: [f32; 3], d: [f32; 3], radii: [f32; 3]) -> Option<(f32, [f32; 3])> {
    let so = [o[0] / radii[0], o[1] / radii[1], o[2] / radii[2]];
    let sd = [d[0] / radii[0], d[1] / radii[1], d[2] / radii[2]];
    let a = dot(sd, sd);
    let b = dot(so, sd);
    let c = dot(so, so) - 1.0;
    let disc = b * b - a * c;
    if disc < 0.0 {
        return None;
    }
    let t = (-b - disc.sqrt()) / a;
    if t <= EPS {
        return None;
    }
    let p = [o[0] + t * d[0], o[1] + t * d[1], o[2] + t * d[2]];
    let n = [
        p[0] / (radii[0] * radii[0]),
        p[1] / (radii[1] * radii[1]),
        p[2] / (radii[2] * radii[2]),
    ];
    Some((t, normalize(n)))
}

pub fn dot(a: [f32; 3], b: [f32; 3]) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub fn normalize(a: [f32; 3]) -> [f32; 3] {
    let n = dot(a, a).sqrt().max(1e-12);
    [a[0] / n, a[1] / n, a[2] / n]
}
