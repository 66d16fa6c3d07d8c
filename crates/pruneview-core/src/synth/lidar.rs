//! A spinning 64-beam LiDAR like KITTI's Velodyne HDL-64E, ray-cast against a [`Scene`].
//!
//! Speed comes from a coarse azimuth binning: each primitive is listed in the 1-degree
//! sectors its bounding sphere covers, with the elevation band it spans, so a ray only tests
//! the few primitives of its sector whose band contains its beam. Columns (one azimuth, all
//! beams) are cast in parallel with rayon; every random draw is a hash of (seed, beam,
//! column), so the output does not depend on the thread schedule.

use std::f32::consts::FRAC_PI_2;

use rayon::prelude::*;

use super::scene::Scene;
use crate::rng::{mix64, normal_from, unit};

/// Sensor model. [`Lidar::hdl64e`] gives KITTI's.
#[derive(Clone, Debug, PartialEq)]
pub struct Lidar {
    /// Beam elevations in degrees, top first.
    pub elevations_deg: Vec<f32>,
    /// Horizontal angular step in degrees (HDL-64E: 0.08 at 5 Hz .. 0.35 at 20 Hz; KITTI's
    /// 10 Hz gives about 0.17).
    pub azimuth_step_deg: f32,
    /// Range noise standard deviation in metres.
    pub range_sigma: f32,
    /// Base probability that a return is lost.
    pub dropout: f32,
    /// Returns at or beyond this range are dropped.
    pub max_range: f32,
    /// Returns closer than this are dropped.
    pub min_range: f32,
}

impl Default for Lidar {
    fn default() -> Self {
        Lidar::hdl64e()
    }
}

impl Lidar {
    /// KITTI's Velodyne HDL-64E S2: an upper block of 32 lasers from +2.0 to -8.33 degrees
    /// (1/3 degree apart) and a lower block of 32 from -8.83 to -24.33 (1/2 degree apart).
    pub fn hdl64e() -> Lidar {
        let mut elevations_deg = Vec::with_capacity(64);
        for i in 0..32 {
            elevations_deg.push(2.0 - i as f32 * (10.33 / 31.0));
        }
        for i in 0..32 {
            elevations_deg.push(-8.83 - i as f32 * 0.5);
        }
        Lidar {
            elevations_deg,
            azimuth_step_deg: 0.17,
            range_sigma: 0.02,
            dropout: 0.03,
            max_range: 120.0,
            min_range: 2.5,
        }
    }

    /// Number of azimuth columns per revolution.
    pub fn columns(&self) -> usize {
        (360.0 / self.azimuth_step_deg.max(0.01)).round() as usize
    }
}

const BINS: usize = 360;

/// A primitive's entry in a sector: its index and elevation band (sines).
#[derive(Clone, Copy)]
struct Entry {
    prim: u32,
    /// Distance from the sensor to the bounding sphere (0 when inside it).
    near: f32,
    sin_lo: f32,
    sin_hi: f32,
}

fn build_bins(scene: &Scene) -> Vec<Vec<Entry>> {
    let mut bins = vec![Vec::new(); BINS];
    for (i, p) in scene.primitives.iter().enumerate() {
        let [x, y, z] = p.center;
        let d = (x * x + y * y + z * z).sqrt();
        let r = p.radius * 1.01 + 0.01;
        if d <= r {
            let e = Entry {
                prim: i as u32,
                near: 0.0,
                sin_lo: -1.0,
                sin_hi: 1.0,
            };
            bins.iter_mut().for_each(|b| b.push(e));
            continue;
        }
        let half = (r / d).asin();
        let el = (z / d).asin();
        let e = Entry {
            prim: i as u32,
            near: d - r,
            sin_lo: (el - half).max(-FRAC_PI_2).sin(),
            sin_hi: (el + half).min(FRAC_PI_2).sin(),
        };
        let dxy = x.hypot(y);
        let half_az = if dxy <= r {
            std::f32::consts::PI
        } else {
            (r / dxy).asin()
        };
        let az = y.atan2(x).to_degrees();
        let (a0, a1) = (az - half_az.to_degrees(), az + half_az.to_degrees());
        let (b0, b1) = (a0.floor() as i64, a1.floor() as i64);
        let n = (b1 - b0 + 1).min(BINS as i64);
        for k in 0..n {
            bins[(b0 + k).rem_euclid(BINS as i64) as usize].push(e);
        }
    }
    // Nearest first, so a ray can stop once the rest lie beyond its closest hit.
    for b in &mut bins {
        b.sort_by(|x, y| x.near.total_cmp(&y.near).then(x.prim.cmp(&y.prim)));
    }
    bins
}

/// Casts one revolution; returns KITTI-layout points (x, y, z, reflectance in [0, 1]), in
/// column order (azimuth from -180 degrees), beams top to bottom within a column.
pub fn render(scene: &Scene, lidar: &Lidar) -> Vec<f32> {
    let bins = build_bins(scene);
    let seed = scene.noise_seed();
    let beams: Vec<(f32, f32, f32)> = lidar
        .elevations_deg
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (s, c) = e.to_radians().sin_cos();
            // Per-laser gain, as the HDL-64E's lasers differ in calibration.
            let gain = 0.85 + 0.3 * unit(mix64(seed ^ (i as u64).wrapping_mul(0x1F1F)));
            (s, c, gain)
        })
        .collect();
    let ncols = lidar.columns();
    let step = 360.0 / ncols as f32;
    let chunks: Vec<Vec<f32>> = (0..ncols)
        .into_par_iter()
        .with_min_len(16)
        .map(|col| {
            let az_deg = -180.0 + (col as f32 + 0.5) * step;
            let (sa, ca) = az_deg.to_radians().sin_cos();
            let bin = ((az_deg + 360.0) as usize) % BINS;
            let entries = &bins[bin];
            let mut out = Vec::with_capacity(64 * 4);
            for (bi, &(se, ce, gain)) in beams.iter().enumerate() {
                let d = [ce * ca, ce * sa, se];
                let mut best = scene.ground.intersect(d);
                for e in entries {
                    if best.as_ref().is_some_and(|(b, _)| e.near > b.t) {
                        break;
                    }
                    if se < e.sin_lo || se > e.sin_hi {
                        continue;
                    }
                    let p = &scene.primitives[e.prim as usize];
                    let c = p.center;
                    let along = c[0] * d[0] + c[1] * d[1] + c[2] * d[2];
                    let perp2 = c[0] * c[0] + c[1] * c[1] + c[2] * c[2] - along * along;
                    if perp2 > p.radius * p.radius {
                        continue;
                    }
                    if let Some(h) = p.intersect([0.0; 3], d)
                        && best.as_ref().is_none_or(|(b, _)| h.t < b.t)
                    {
                        best = Some((h, p.material));
                    }
                }
                let Some((hit, mat)) = best else { continue };
                let key = seed ^ mix64(((col as u64) << 16) | bi as u64);
                let h = |k: u64| mix64(key.wrapping_add(k.wrapping_mul(0x9E37_79B9)));
                let range = hit.t + lidar.range_sigma * normal_from(h(1), h(2)).clamp(-4.0, 4.0);
                if range >= lidar.max_range || range < lidar.min_range {
                    continue;
                }
                let cos_inc = -(hit.normal[0] * d[0] + hit.normal[1] * d[1] + hit.normal[2] * d[2]);
                let cos_inc = cos_inc.abs().min(1.0);
                let intensity = (mat.reflectivity * gain * (0.45 + 0.55 * cos_inc)
                    + 0.015 * normal_from(h(3), h(4)))
                .clamp(0.0, 1.0);
                // Weak returns are lost more often, at grazing angles and far away.
                let weak = (1.0 - intensity).powi(2) * (range / lidar.max_range).powi(2);
                let p_drop =
                    lidar.dropout + mat.dropout + 0.5 * weak + 0.1 * (1.0 - cos_inc).powi(4);
                if unit(h(5)) < p_drop {
                    continue;
                }
                // KITTI stores reflectance with two decimals.
                let intensity = (intensity * 100.0).round() / 100.0;
                out.extend_from_slice(&[d[0] * range, d[1] * range, d[2] * range, intensity]);
            }
            out
        })
        .collect();
    chunks.concat()
}
