//! Point colours: the height and intensity ramps, and the conversion into the colour space
//! kiss3d expects.

use eframe::egui;
use kiss3d::color::Color;

use super::{ColorBy, HEIGHT_RANGE};

/// kiss3d's tonemap pass ends with `pow(c, 1/2.2)`; colours are therefore given to it as
/// `srgb^2.2` so that the pixels come out as the sRGB colour we meant.
pub(super) fn kiss_color(c: [f32; 3]) -> Color {
    Color::new(c[0].powf(2.2), c[1].powf(2.2), c[2].powf(2.2), 1.0)
}

pub(super) fn kiss_color32(c: egui::Color32) -> Color {
    kiss_color([
        f32::from(c.r()) / 255.0,
        f32::from(c.g()) / 255.0,
        f32::from(c.b()) / 255.0,
    ])
}

/// Piecewise-linear interpolation over evenly spaced sRGB anchors, `t` clamped to 0..1.
fn ramp(anchors: &[[u8; 3]], t: f32) -> [f32; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let n = anchors.len() - 1;
    let x = t * n as f32;
    let i = (x.floor() as usize).min(n - 1);
    let f = x - i as f32;
    let (a, b) = (anchors[i], anchors[i + 1]);
    std::array::from_fn(|k| (f32::from(a[k]) + (f32::from(b[k]) - f32::from(a[k])) * f) / 255.0)
}

/// A viridis-like ramp (dark purple, blue, teal, green, yellow): perceptually ordered, readable
/// for colour-blind users. Returns sRGB in 0..1.
pub fn height_ramp(t: f32) -> [f32; 3] {
    const A: [[u8; 3]; 9] = [
        [68, 1, 84],
        [71, 44, 122],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [92, 200, 99],
        [170, 220, 50],
        [253, 231, 37],
    ];
    ramp(&A, t)
}

/// A plasma-like ramp (deep blue, purple, pink, orange, yellow), distinct from the height ramp so
/// the two colourings are not confused. Returns sRGB in 0..1.
pub fn intensity_ramp(t: f32) -> [f32; 3] {
    const A: [[u8; 3]; 7] = [
        [13, 8, 135],
        [84, 2, 163],
        [139, 10, 165],
        [185, 50, 137],
        [219, 92, 104],
        [244, 136, 73],
        [240, 249, 33],
    ];
    ramp(&A, t)
}

/// The colour of one point row (`x, y, z, intensity, ...`) as sRGB 0..1. `intensity_scale` maps the
/// raw 4th column to 0..1.
pub(super) fn point_color(row: &[f32], color_by: ColorBy, intensity_scale: f32) -> [f32; 3] {
    match color_by {
        ColorBy::Height => {
            let (lo, hi) = HEIGHT_RANGE;
            height_ramp((row[2] - lo) / (hi - lo))
        }
        ColorBy::Intensity => match row.get(3) {
            Some(i) => intensity_ramp(i * intensity_scale),
            None => intensity_ramp(0.5),
        },
    }
}

/// The 0..1 scale for the intensity column: KITTI stores 0..1, nuScenes 0..255.
pub(super) fn intensity_scale(points: &[f32], nf: usize) -> f32 {
    if nf < 4 {
        return 1.0;
    }
    let max = points
        .chunks_exact(nf)
        .map(|r| r[3])
        .filter(|v| v.is_finite())
        .fold(0.0f32, f32::max);
    if max > 1.0 + 1e-3 { 1.0 / 255.0 } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_are_clamped_and_distinct() {
        assert_eq!(height_ramp(-5.0), height_ramp(0.0));
        assert_eq!(height_ramp(5.0), height_ramp(1.0));
        assert_eq!(height_ramp(f32::NAN), height_ramp(0.0));
        let lum = |c: [f32; 3]| 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
        for ramp in [height_ramp, intensity_ramp] {
            let mut last = -1.0;
            for i in 0..=20 {
                let l = lum(ramp(i as f32 / 20.0));
                assert!(l > last, "luminance must increase along the ramp");
                last = l;
            }
        }
        assert_ne!(height_ramp(0.3), intensity_ramp(0.3));
        // nuScenes-style 0..255 intensities are scaled, KITTI's 0..1 are not.
        assert_eq!(intensity_scale(&[0.0, 0.0, 0.0, 0.7], 4), 1.0);
        assert_eq!(intensity_scale(&[0.0, 0.0, 0.0, 200.0], 4), 1.0 / 255.0);
    }
}
