//! KITTI companions of a scan: calibration, `label_2` objects, the camera-FOV filter and the
//! box conversions between the LiDAR and rectified-camera frames.
//!
//! The arithmetic mirrors OpenPCDet (`calibration_kitti.py`, `box_utils.py`,
//! `KittiDataset.get_fov_flag` / `generate_prediction_dicts`) including where it works in
//! float32: the calibration is parsed to float32 and the point projections are float32
//! products summed in index order, so the FOV filter keeps exactly the points OpenPCDet keeps.
//!
//! Frames: LiDAR x forward, y left, z up. Rectified camera x right, y down, z forward.
//! A [`LidarBox`] is OpenPCDet's `[x, y, z, dx, dy, dz, heading]` (gravity centre); a
//! [`CameraBox`] has (x, y, z) at the *bottom* centre (both in [`crate::boxes`]).

use std::f32::consts::FRAC_PI_2;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use thiserror::Error;

use crate::boxes::{CameraBox, LidarBox, camera_box_corners};

use super::scan::{Scan, write_atomic};

/// Everything that can go wrong with KITTI calibration, labels or image sizes.
#[derive(Debug, Error)]
pub enum KittiError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{}: no {matrix} in the calibration: no line starts with '{key}:' and there is no \
         line {line} (the file has {lines} lines; KITTI calib files list P0 P1 P2 P3 R0_rect \
         Tr_velo_to_cam Tr_imu_to_velo)",
        path.display()
    )]
    CalibMissing {
        path: PathBuf,
        matrix: &'static str,
        key: &'static str,
        line: usize,
        lines: usize,
    },
    #[error("{}: line {line} ({matrix}): expected {expected} numbers, found {found}", path.display())]
    CalibCount {
        path: PathBuf,
        line: usize,
        matrix: &'static str,
        expected: usize,
        found: usize,
    },
    #[error(
        "{}: line {line} ({matrix}): value {index} '{token}' is not a finite number",
        path.display()
    )]
    CalibValue {
        path: PathBuf,
        line: usize,
        matrix: &'static str,
        index: usize,
        token: String,
    },
    #[error(
        "{}: line {line}: expected 15 fields (type truncated occluded alpha x1 y1 x2 y2 h w l \
         x y z rotation_y) or 16 with a score, found {found}",
        path.display()
    )]
    LabelFields {
        path: PathBuf,
        line: usize,
        found: usize,
    },
    #[error(
        "{}: line {line}: field {index} ({field}) '{token}' is not {expected}",
        path.display()
    )]
    LabelValue {
        path: PathBuf,
        line: usize,
        index: usize,
        field: &'static str,
        token: String,
        expected: &'static str,
    },
    #[error("bad image size '{text}': expected HEIGHTxWIDTH in pixels, e.g. 375x1242")]
    ImageSize { text: String },
}

/// Image size in pixels, parsed from `"HxW"` (e.g. `"375x1242"`, KITTI's usual image_2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImageSize {
    pub h: u32,
    pub w: u32,
}

impl FromStr for ImageSize {
    type Err = KittiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || KittiError::ImageSize {
            text: s.to_string(),
        };
        let (h, w) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let h: u32 = h.trim().parse().map_err(|_| bad())?;
        let w: u32 = w.trim().parse().map_err(|_| bad())?;
        if h == 0 || w == 0 {
            return Err(bad());
        }
        Ok(ImageSize { h, w })
    }
}

impl std::fmt::Display for ImageSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.h, self.w)
    }
}

/// The three matrices OpenPCDet uses from a KITTI `calib/*.txt`, as float32, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Calib {
    /// Camera 2 projection (3 x 4).
    pub p2: [[f32; 4]; 3],
    /// Rectifying rotation `R0_rect` (3 x 3).
    pub r0: [[f32; 3]; 3],
    /// `Tr_velo_to_cam` (3 x 4).
    pub v2c: [[f32; 4]; 3],
}

/// One matrix to find in a calib file: its names and OpenPCDet's line index.
struct CalibEntry {
    matrix: &'static str,
    keys: &'static [&'static str],
    line_index: usize,
}

const P2: CalibEntry = CalibEntry {
    matrix: "P2",
    keys: &["P2"],
    line_index: 2,
};
const R0: CalibEntry = CalibEntry {
    matrix: "R0_rect",
    keys: &["R0_rect", "R0", "R_rect"],
    line_index: 4,
};
const V2C: CalibEntry = CalibEntry {
    matrix: "Tr_velo_to_cam",
    keys: &["Tr_velo_to_cam", "Tr_velo_cam"],
    line_index: 5,
};

impl Calib {
    /// Reads a KITTI calibration file (see [`Calib::parse`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Calib, KittiError> {
        let path = path.as_ref();
        Calib::parse(&read_text(path)?, path)
    }

    /// Parses calibration text; `path` is only used in error messages.
    ///
    /// Each matrix is found by its key (`P2:`, `R0_rect:`, `Tr_velo_to_cam:`); when a key is
    /// absent, by OpenPCDet's line index (2, 4, 5; 0-based), dropping a leading label token
    /// as OpenPCDet's `split(' ')[1:]` does. Values are parsed as float64 and rounded to
    /// float32, as `np.array(tokens, dtype=np.float32)` does.
    pub fn parse(text: &str, path: impl AsRef<Path>) -> Result<Calib, KittiError> {
        let path = path.as_ref();
        let lines: Vec<&str> = text.lines().collect();
        let p2 = calib_values::<12>(&lines, path, &P2)?;
        let r0 = calib_values::<9>(&lines, path, &R0)?;
        let v2c = calib_values::<12>(&lines, path, &V2C)?;
        let mut calib = Calib {
            p2: [[0.0; 4]; 3],
            r0: [[0.0; 3]; 3],
            v2c: [[0.0; 4]; 3],
        };
        for r in 0..3 {
            calib.p2[r].copy_from_slice(&p2[r * 4..r * 4 + 4]);
            calib.r0[r].copy_from_slice(&r0[r * 3..r * 3 + 3]);
            calib.v2c[r].copy_from_slice(&v2c[r * 4..r * 4 + 4]);
        }
        Ok(calib)
    }

    /// The calibration as KITTI text (7 lines, so OpenPCDet's by-index reader works too).
    /// Only one camera is known, so P0, P1 and P3 repeat P2; `Tr_imu_to_velo` is the identity.
    pub fn to_kitti_text(&self) -> String {
        let flat = |rows: &[&[f32]]| {
            rows.iter()
                .flat_map(|r| r.iter())
                .map(|v| format!("{v:e}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let p2 = flat(&[&self.p2[0], &self.p2[1], &self.p2[2]]);
        let r0 = flat(&[&self.r0[0], &self.r0[1], &self.r0[2]]);
        let v2c = flat(&[&self.v2c[0], &self.v2c[1], &self.v2c[2]]);
        let identity = flat(&[
            &[1.0, 0.0, 0.0, 0.0],
            &[0.0, 1.0, 0.0, 0.0],
            &[0.0, 0.0, 1.0, 0.0],
        ]);
        let mut s = String::new();
        for key in ["P0", "P1", "P2", "P3"] {
            let _ = writeln!(s, "{key}: {p2}");
        }
        let _ = writeln!(s, "R0_rect: {r0}");
        let _ = writeln!(s, "Tr_velo_to_cam: {v2c}");
        let _ = writeln!(s, "Tr_imu_to_velo: {identity}");
        s
    }

    /// Writes [`Calib::to_kitti_text`] atomically.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), KittiError> {
        let path = path.as_ref();
        write_atomic(path, self.to_kitti_text().as_bytes()).map_err(|source| KittiError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// `V2C^T . R0^T` (4 x 3), the float32 matrix OpenPCDet's `lidar_to_rect` multiplies by.
    fn lidar_to_rect_matrix(&self) -> [[f32; 3]; 4] {
        let mut m = [[0f32; 3]; 4];
        for (k, row) in m.iter_mut().enumerate() {
            for (j, out) in row.iter_mut().enumerate() {
                *out = self.v2c[0][k] * self.r0[j][0]
                    + self.v2c[1][k] * self.r0[j][1]
                    + self.v2c[2][k] * self.r0[j][2];
            }
        }
        m
    }

    /// LiDAR point to the rectified camera frame: `[p, 1] . (V2C^T . R0^T)` in float32.
    pub fn lidar_to_rect(&self, p: [f32; 3]) -> [f32; 3] {
        apply_lidar_to_rect(&self.lidar_to_rect_matrix(), p)
    }

    /// Rectified camera point to image_2: `((u, v), depth)` with `(u, v) = (P2 . [r, 1])[..2]
    /// / r_z` (OpenPCDet divides by rect z, not the homogeneous w) and
    /// `depth = (P2 . [r, 1])[2] - P2[2][3]`, in float32.
    pub fn rect_to_img(&self, r: [f32; 3]) -> ([f32; 2], f32) {
        let a = |j: usize| {
            r[0] * self.p2[j][0] + r[1] * self.p2[j][1] + r[2] * self.p2[j][2] + self.p2[j][3]
        };
        let (a0, a1, a2) = (a(0), a(1), a(2));
        ([a0 / r[2], a1 / r[2]], a2 - self.p2[2][3])
    }

    /// Rectified camera point to LiDAR: `[r, 1] . inv(R0_ext . V2C_ext)^T`. OpenPCDet's GT
    /// path runs this in float64 (the label's rotation_y array is float64), so do we.
    pub fn rect_to_lidar(&self, r: [f64; 3]) -> [f64; 3] {
        // R0_ext . V2C_ext (4 x 4), multiplied in float32 as numpy does for float32 inputs.
        let mut m = [[0f64; 4]; 4];
        for (i, row) in m.iter_mut().take(3).enumerate() {
            for (j, out) in row.iter_mut().enumerate() {
                let v: f32 = self.r0[i][0] * self.v2c[0][j]
                    + self.r0[i][1] * self.v2c[1][j]
                    + self.r0[i][2] * self.v2c[2][j];
                *out = f64::from(v);
            }
        }
        m[3][3] = 1.0;
        let inv = invert4(m);
        let h = [r[0], r[1], r[2], 1.0];
        let mut out = [0f64; 3];
        for (i, o) in out.iter_mut().enumerate() {
            *o = (0..4).map(|k| inv[i][k] * h[k]).sum();
        }
        out
    }

    /// OpenPCDet's `get_fov_flag`: for each point (row of `num_features` values, x y z
    /// first), whether it projects into an image of `image` size with non-negative depth:
    /// `0 <= u < W`, `0 <= v < H`, `depth >= 0`. Rows of fewer than 3 values are never in.
    pub fn fov_flags(&self, points: &[f32], num_features: usize, image: ImageSize) -> Vec<bool> {
        let m = self.lidar_to_rect_matrix();
        points
            .chunks_exact(num_features.max(1))
            .map(|p| p.len() >= 3 && self.in_fov(&m, [p[0], p[1], p[2]], image))
            .collect()
    }

    fn in_fov(&self, m: &[[f32; 3]; 4], p: [f32; 3], image: ImageSize) -> bool {
        let rect = apply_lidar_to_rect(m, p);
        let ([u, v], depth) = self.rect_to_img(rect);
        u >= 0.0 && u < image.w as f32 && v >= 0.0 && v < image.h as f32 && depth >= 0.0
    }

    /// `box_utils.boxes3d_kitti_camera_to_lidar` for one box: the bottom centre goes to the
    /// LiDAR frame, z is raised by h/2 (gravity centre), dims become (l, w, h) and
    /// heading = -(ry + pi/2). Computed in float64 as OpenPCDet's GT path, returned as f32.
    pub fn camera_box_to_lidar(&self, b: &CameraBox) -> LidarBox {
        let [x, y, z] = self.rect_to_lidar([f64::from(b.x), f64::from(b.y), f64::from(b.z)]);
        let (l, h, w, ry) = (b.l, b.h, b.w, f64::from(b.ry));
        let z = z + f64::from(h) / 2.0;
        let heading = -(ry + std::f64::consts::FRAC_PI_2);
        [x as f32, y as f32, z as f32, l, w, h, heading as f32]
    }

    /// `box_utils.boxes3d_lidar_to_kitti_camera` for one box (float32): z is lowered by dz/2
    /// (bottom centre), the centre goes to the rectified frame, dims become (l, h, w) and
    /// ry = -heading - pi/2.
    pub fn lidar_box_to_camera(&self, b: &LidarBox) -> CameraBox {
        let (l, w, h) = (b[3], b[4], b[5]);
        let [x, y, z] = self.lidar_to_rect([b[0], b[1], b[2] - h / 2.0]);
        CameraBox {
            x,
            y,
            z,
            l,
            h,
            w,
            ry: -b[6] - FRAC_PI_2,
        }
    }

    /// `box_utils.boxes3d_kitti_camera_to_imageboxes` for one box: the min/max of the eight
    /// projected corners, `[x1, y1, x2, y2]`, clipped to `[0, W-1] x [0, H-1]` when an image
    /// size is given.
    pub fn camera_box_to_image_box(&self, b: &CameraBox, clip: Option<ImageSize>) -> [f32; 4] {
        let mut out = [
            f32::INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        ];
        for c in camera_box_corners(b) {
            let ([u, v], _) = self.rect_to_img(c);
            out[0] = out[0].min(u);
            out[1] = out[1].min(v);
            out[2] = out[2].max(u);
            out[3] = out[3].max(v);
        }
        if let Some(image) = clip {
            let (wmax, hmax) = (
                image.w.saturating_sub(1) as f32,
                image.h.saturating_sub(1) as f32,
            );
            out[0] = out[0].clamp(0.0, wmax);
            out[1] = out[1].clamp(0.0, hmax);
            out[2] = out[2].clamp(0.0, wmax);
            out[3] = out[3].clamp(0.0, hmax);
        }
        out
    }

    /// A detection in KITTI form, as OpenPCDet's `generate_prediction_dicts` makes it: camera
    /// box, 2-D box clipped to the image, `alpha = -atan2(-y, x) + ry` (LiDAR x, y), truncated
    /// and occluded 0 as in its prediction template.
    pub fn lidar_box_to_prediction(
        &self,
        b: &LidarBox,
        name: &str,
        score: f32,
        image: ImageSize,
    ) -> KittiObject {
        let cam = self.lidar_box_to_camera(b);
        let bbox = self.camera_box_to_image_box(&cam, Some(image));
        KittiObject {
            name: name.to_string(),
            truncated: 0.0,
            occluded: 0,
            alpha: -(-b[1]).atan2(b[0]) + cam.ry,
            bbox,
            h: cam.h,
            w: cam.w,
            l: cam.l,
            location: [cam.x, cam.y, cam.z],
            rotation_y: cam.ry,
            score: Some(score),
        }
    }
}

/// `[p, 1] . m` with float32 products summed in index order.
fn apply_lidar_to_rect(m: &[[f32; 3]; 4], p: [f32; 3]) -> [f32; 3] {
    let mut r = [0f32; 3];
    for (j, out) in r.iter_mut().enumerate() {
        *out = p[0] * m[0][j] + p[1] * m[1][j] + p[2] * m[2][j] + m[3][j];
    }
    r
}

/// Inverse of a 4 x 4 matrix by Gauss-Jordan elimination with partial pivoting. A singular
/// matrix (a broken calibration) gives non-finite values rather than a panic.
fn invert4(m: [[f64; 4]; 4]) -> [[f64; 4]; 4] {
    let mut a = m;
    let mut inv = [[0f64; 4]; 4];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for col in 0..4 {
        let pivot = (col..4)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let d = a[col][col];
        for k in 0..4 {
            a[col][k] /= d;
            inv[col][k] /= d;
        }
        for r in 0..4 {
            if r != col {
                let f = a[r][col];
                for k in 0..4 {
                    a[r][k] -= f * a[col][k];
                    inv[r][k] -= f * inv[col][k];
                }
            }
        }
    }
    inv
}

/// Finds one calib matrix by key, else by line index, and parses its values.
fn calib_values<const N: usize>(
    lines: &[&str],
    path: &Path,
    entry: &CalibEntry,
) -> Result<[f32; N], KittiError> {
    let keyed = lines.iter().enumerate().find_map(|(i, line)| {
        let (key, rest) = line.trim_start().split_once(':')?;
        entry.keys.contains(&key.trim()).then_some((i, rest))
    });
    let (index, values) = match keyed {
        Some(found) => found,
        None => {
            let line = lines
                .get(entry.line_index)
                .ok_or(KittiError::CalibMissing {
                    path: path.to_path_buf(),
                    matrix: entry.matrix,
                    key: entry.keys[0],
                    line: entry.line_index + 1,
                    lines: lines.len(),
                })?;
            // OpenPCDet drops the first token (the label); keep it if it is a number.
            let line = line.trim_start();
            let first = line.split_whitespace().next().unwrap_or_default();
            let rest = if first.parse::<f64>().is_ok() {
                line
            } else {
                &line[first.len()..]
            };
            (entry.line_index, rest)
        }
    };
    let tokens: Vec<&str> = values.split_whitespace().collect();
    if tokens.len() != N {
        return Err(KittiError::CalibCount {
            path: path.to_path_buf(),
            line: index + 1,
            matrix: entry.matrix,
            expected: N,
            found: tokens.len(),
        });
    }
    let mut out = [0f32; N];
    for (k, (o, t)) in out.iter_mut().zip(&tokens).enumerate() {
        *o = t
            .parse::<f64>()
            .ok()
            .map(|v| v as f32)
            .filter(|v| v.is_finite())
            .ok_or_else(|| KittiError::CalibValue {
                path: path.to_path_buf(),
                line: index + 1,
                matrix: entry.matrix,
                index: k,
                token: t.to_string(),
            })?;
    }
    Ok(out)
}

/// Keeps the points of `scan` inside the camera-2 field of view (OpenPCDet's
/// `FOV_POINTS_ONLY` for KITTI); returns how many were removed.
pub fn fov_filter(scan: &mut Scan, calib: &Calib, image: ImageSize) -> usize {
    let m = calib.lidar_to_rect_matrix();
    scan.retain(|p| calib.in_fov(&m, [p[0], p[1], p[2]], image))
}

/// One object of a KITTI `label_2` file (or a detection in KITTI result form).
#[derive(Clone, Debug, PartialEq)]
pub struct KittiObject {
    /// Class: Car, Van, Truck, Pedestrian, Person_sitting, Cyclist, Tram, Misc, DontCare.
    pub name: String,
    /// 0 (fully visible) .. 1 (leaving the image).
    pub truncated: f32,
    /// 0 fully visible, 1 partly occluded, 2 largely occluded, 3 unknown (-1 for DontCare).
    pub occluded: i32,
    /// Observation angle, [-pi, pi].
    pub alpha: f32,
    /// 2-D box in image_2 pixels: x1, y1, x2, y2.
    pub bbox: [f32; 4],
    /// Height, width, length in metres.
    pub h: f32,
    pub w: f32,
    pub l: f32,
    /// Bottom centre in the rectified camera frame.
    pub location: [f32; 3],
    /// Yaw about the camera y axis.
    pub rotation_y: f32,
    /// Detection score (the optional 16th field).
    pub score: Option<f32>,
}

const LABEL_FIELDS: [&str; 16] = [
    "type",
    "truncated",
    "occluded",
    "alpha",
    "bbox x1",
    "bbox y1",
    "bbox x2",
    "bbox y2",
    "height",
    "width",
    "length",
    "location x",
    "location y",
    "location z",
    "rotation_y",
    "score",
];

impl KittiObject {
    /// True for `DontCare` regions.
    pub fn is_dontcare(&self) -> bool {
        self.name == "DontCare"
    }

    /// The object's 3-D box (OpenPCDet's `[x, y, z, l, h, w, ry]` of `get_infos`: location,
    /// then dimensions l, h, w, then rotation_y), for the box conversions and the KITTI IoU.
    pub fn camera_box(&self) -> CameraBox {
        let [x, y, z] = self.location;
        CameraBox {
            x,
            y,
            z,
            l: self.l,
            h: self.h,
            w: self.w,
            ry: self.rotation_y,
        }
    }

    /// The object as one `label_2` line; numbers are written so that they read back exactly.
    pub fn to_kitti_line(&self) -> String {
        let mut s = format!(
            "{} {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
            self.name,
            self.truncated,
            self.occluded,
            self.alpha,
            self.bbox[0],
            self.bbox[1],
            self.bbox[2],
            self.bbox[3],
            self.h,
            self.w,
            self.l,
            self.location[0],
            self.location[1],
            self.location[2],
            self.rotation_y
        );
        if let Some(score) = self.score {
            let _ = write!(s, " {score}");
        }
        s
    }
}

/// Reads a KITTI `label_2` file (see [`parse_labels`]).
pub fn load_labels(path: impl AsRef<Path>) -> Result<Vec<KittiObject>, KittiError> {
    let path = path.as_ref();
    parse_labels(&read_text(path)?, path)
}

/// A calib or label file's text (a regular file of a sane size).
fn read_text(path: &Path) -> Result<String, KittiError> {
    crate::io::read_text_limited(path, crate::io::MAX_CONFIG_BYTES).map_err(|source| {
        KittiError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Parses `label_2` text: one object per line, 15 whitespace-separated fields plus an optional
/// score; blank lines are skipped. `path` is only used in error messages.
pub fn parse_labels(text: &str, path: impl AsRef<Path>) -> Result<Vec<KittiObject>, KittiError> {
    let path = path.as_ref();
    let mut objects = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.is_empty() {
            continue;
        }
        if t.len() != 15 && t.len() != 16 {
            return Err(KittiError::LabelFields {
                path: path.to_path_buf(),
                line: line_no,
                found: t.len(),
            });
        }
        let bad = |k: usize, expected: &'static str| KittiError::LabelValue {
            path: path.to_path_buf(),
            line: line_no,
            index: k + 1,
            field: LABEL_FIELDS[k],
            token: t[k].to_string(),
            expected,
        };
        let num = |k: usize| -> Result<f32, KittiError> {
            t[k].parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(k, "a finite number"))
        };
        // Occlusion is an integer state; accept "1" and "1.0", reject "1.5".
        let occluded = t[2]
            .parse::<i32>()
            .ok()
            .or_else(|| {
                let v = t[2].parse::<f64>().ok()?;
                (v.fract() == 0.0 && v.abs() < 1e6).then_some(v as i32)
            })
            .ok_or_else(|| bad(2, "an integer (0, 1, 2, 3, or -1 for DontCare)"))?;
        objects.push(KittiObject {
            name: t[0].to_string(),
            truncated: num(1)?,
            occluded,
            alpha: num(3)?,
            bbox: [num(4)?, num(5)?, num(6)?, num(7)?],
            h: num(8)?,
            w: num(9)?,
            l: num(10)?,
            location: [num(11)?, num(12)?, num(13)?],
            rotation_y: num(14)?,
            score: if t.len() == 16 { Some(num(15)?) } else { None },
        });
    }
    Ok(objects)
}

/// Writes objects as a `label_2` file, atomically.
pub fn write_labels(path: impl AsRef<Path>, objects: &[KittiObject]) -> Result<(), KittiError> {
    let path = path.as_ref();
    let mut text = String::new();
    for o in objects {
        text.push_str(&o.to_kitti_line());
        text.push('\n');
    }
    write_atomic(path, text.as_bytes()).map_err(|source| KittiError::Write {
        path: path.to_path_buf(),
        source,
    })
}
