//! Range mask and voxelizer, bit-for-bit as OpenPCDet's test-time data processor.
//!
//! [`mask_points_by_range`] is OpenPCDet's `common_utils.mask_points_by_range`: x and y inside
//! the range, both ends inclusive, z *not* checked. [`voxelize`] is spconv 2's
//! `Point2VoxelCPU3d.point_to_voxel`, which OpenPCDet's `transform_points_to_voxels` calls:
//!
//! * per point, in file order: `c = floor((p - range_min) / voxel_size)` in float32 for each
//!   axis; the point is dropped if any `c < 0 || c >= grid`;
//! * voxels get ids in first-appearance order; once `max_voxels` exist, points that would open
//!   a new voxel are dropped;
//! * a point is appended while its voxel holds fewer than `max_points_per_voxel` points;
//! * outputs: `voxels (P, max_points, F)` zero-padded, `coords (P, 3)` int32 **zyx**,
//!   `num_points (P)`.
//!
//! spconv looks voxels up in a dense table the size of the grid; we do the same for grids up
//! to [`DENSE_TABLE_MAX_CELLS`] cells (pillar grids are ~0.2 M) and use a hash map beyond, with
//! identical results.

use std::collections::HashMap;

use thiserror::Error;

/// Largest grid (cells) looked up through a dense `i32` table (64 MiB); larger grids use a
/// hash map.
pub const DENSE_TABLE_MAX_CELLS: usize = 1 << 24;

/// A voxelizer configuration that cannot work, or points that do not fit it.
#[derive(Debug, Error)]
pub enum VoxelError {
    #[error("voxel config: {problem}")]
    Config { problem: String },
    #[error(
        "voxel grid: OpenPCDet's grid size (nx, ny, nz) = {openpcdet:?} differs from spconv's \
         {spconv:?} for range {range:?} and voxel size {voxel:?}; make (max - min) / voxel \
         size a whole number on every axis"
    )]
    GridMismatch {
        openpcdet: [usize; 3],
        spconv: [usize; 3],
        range: [f32; 6],
        voxel: [f32; 3],
    },
    #[error("points: {len} values do not make whole points of {num_features} features")]
    Shape { len: usize, num_features: usize },
}

/// The data processor's voxel settings (`POINT_CLOUD_RANGE`, `VOXEL_SIZE`,
/// `MAX_POINTS_PER_VOXEL`, `MAX_NUMBER_OF_VOXELS['test']`).
#[derive(Clone, Debug, PartialEq)]
pub struct VoxelConfig {
    /// `[x_min, y_min, z_min, x_max, y_max, z_max]`.
    pub point_cloud_range: [f32; 6],
    /// `[vx, vy, vz]`.
    pub voxel_size: [f32; 3],
    pub max_points_per_voxel: usize,
    pub max_voxels: usize,
}

impl VoxelConfig {
    /// OpenPCDet's grid size `[nx, ny, nz]`:
    /// `np.round((range[3:6] - range[0:3]) / np.array(voxel_size)).astype(np.int64)` — the
    /// difference in float32, the division in float64, round half to even.
    pub fn grid_size(&self) -> Result<[usize; 3], VoxelError> {
        self.check()?;
        let r = &self.point_cloud_range;
        let mut g = [0usize; 3];
        for (a, out) in g.iter_mut().enumerate() {
            let diff = f64::from(r[a + 3] - r[a]);
            let n = (diff / f64::from(self.voxel_size[a])).round_ties_even();
            *out = self.grid_count(a, n)?;
        }
        Ok(g)
    }

    /// spconv's grid size `[nx, ny, nz]`: `std::round((max - min) / vsize)` all in float32,
    /// round half away from zero. This is the grid the voxelizer drops points against.
    fn spconv_grid_size(&self) -> Result<[usize; 3], VoxelError> {
        let r = &self.point_cloud_range;
        let mut g = [0usize; 3];
        for (a, out) in g.iter_mut().enumerate() {
            let n = ((r[a + 3] - r[a]) / self.voxel_size[a]).round();
            *out = self.grid_count(a, f64::from(n))?;
        }
        Ok(g)
    }

    fn grid_count(&self, axis: usize, n: f64) -> Result<usize, VoxelError> {
        if !(1.0..=f64::from(i32::MAX)).contains(&n) {
            return Err(VoxelError::Config {
                problem: format!(
                    "range {:?} with voxel size {:?} gives {n} voxels along {}; expected 1 or more",
                    self.point_cloud_range,
                    self.voxel_size,
                    ["x", "y", "z"][axis]
                ),
            });
        }
        Ok(n as usize)
    }

    fn check(&self) -> Result<(), VoxelError> {
        let bad = |problem: String| Err(VoxelError::Config { problem });
        let r = &self.point_cloud_range;
        if r.iter().any(|v| !v.is_finite()) || (0..3).any(|a| r[a] >= r[a + 3]) {
            return bad(format!(
                "point cloud range {r:?} must be finite with min < max on every axis"
            ));
        }
        if self.voxel_size.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return bad(format!(
                "voxel size {:?} must be finite and positive",
                self.voxel_size
            ));
        }
        if self.max_points_per_voxel == 0 || self.max_voxels == 0 {
            return bad(format!(
                "max points per voxel ({}) and max voxels ({}) must be at least 1",
                self.max_points_per_voxel, self.max_voxels
            ));
        }
        if self.max_voxels > i32::MAX as usize {
            return bad(format!("max voxels {} exceeds i32", self.max_voxels));
        }
        Ok(())
    }
}

/// What the voxelizer did with its input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VoxelStats {
    /// Points given.
    pub points_in: usize,
    /// Points stored in a voxel.
    pub points_kept: usize,
    /// Outside the grid on some axis (or NaN).
    pub out_of_grid: usize,
    /// Their voxel already held `max_points_per_voxel` points.
    pub voxel_full: usize,
    /// They would have opened a voxel after `max_voxels` existed.
    pub over_max_voxels: usize,
}

/// Voxelizer output, spconv's layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Voxels {
    /// `(P, max_points, num_features)` row-major, zero-padded past `num_points[p]`.
    pub voxels: Vec<f32>,
    /// `(P, 3)` int32 voxel indices in **z, y, x** order.
    pub coords: Vec<i32>,
    /// `(P)` points in each voxel, 1..=max_points.
    pub num_points: Vec<i32>,
    pub num_features: usize,
    pub max_points: usize,
    /// `[nx, ny, nz]`.
    pub grid_size: [usize; 3],
    pub stats: VoxelStats,
}

impl Voxels {
    /// Number of voxels P.
    pub fn len(&self) -> usize {
        self.num_points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.num_points.is_empty()
    }

    /// Voxel `p`'s padded point block, `max_points x num_features`.
    pub fn voxel(&self, p: usize) -> &[f32] {
        let block = self.max_points * self.num_features;
        &self.voxels[p * block..(p + 1) * block]
    }

    /// Voxel `p`'s `[z, y, x]`.
    pub fn coord(&self, p: usize) -> [i32; 3] {
        [
            self.coords[3 * p],
            self.coords[3 * p + 1],
            self.coords[3 * p + 2],
        ]
    }
}

/// OpenPCDet's `mask_points_by_range`: `x_min <= x <= x_max && y_min <= y <= y_max` (float32,
/// inclusive; z is not checked). One flag per point of `num_features` values.
pub fn mask_points_by_range(points: &[f32], num_features: usize, range: &[f32; 6]) -> Vec<bool> {
    points
        .chunks_exact(num_features.max(1))
        .map(|p| in_range(p, range))
        .collect()
}

/// The points of [`mask_points_by_range`], copied in order.
pub fn filter_by_range(points: &[f32], num_features: usize, range: &[f32; 6]) -> Vec<f32> {
    let mut out = Vec::with_capacity(points.len());
    for p in points.chunks_exact(num_features.max(1)) {
        if in_range(p, range) {
            out.extend_from_slice(p);
        }
    }
    out
}

fn in_range(p: &[f32], r: &[f32; 6]) -> bool {
    p.len() >= 2 && p[0] >= r[0] && p[0] <= r[3] && p[1] >= r[1] && p[1] <= r[4]
}

/// Voxel lookup: spconv's dense table, or a hash map for very large grids.
enum Table {
    Dense(Vec<i32>),
    Sparse(HashMap<usize, i32>),
}

impl Table {
    fn get(&self, key: usize) -> Option<i32> {
        match self {
            Table::Dense(t) => Some(t[key]).filter(|&v| v >= 0),
            Table::Sparse(m) => m.get(&key).copied(),
        }
    }

    fn insert(&mut self, key: usize, id: i32) {
        match self {
            Table::Dense(t) => t[key] = id,
            Table::Sparse(m) => {
                m.insert(key, id);
            }
        }
    }
}

/// Voxelizes `points` (row-major, `num_features` values each, x y z first) exactly as spconv
/// 2's `Point2VoxelCPU3d` does; every column is copied into the voxels.
pub fn voxelize(
    points: &[f32],
    num_features: usize,
    config: &VoxelConfig,
) -> Result<Voxels, VoxelError> {
    if num_features < 3 || !points.len().is_multiple_of(num_features) {
        return Err(VoxelError::Shape {
            len: points.len(),
            num_features,
        });
    }
    let grid = config.grid_size()?;
    let spconv = config.spconv_grid_size()?;
    if grid != spconv {
        return Err(VoxelError::GridMismatch {
            openpcdet: grid,
            spconv,
            range: config.point_cloud_range,
            voxel: config.voxel_size,
        });
    }
    let [nx, ny, nz] = grid;
    let cells = nx
        .checked_mul(ny)
        .and_then(|v| v.checked_mul(nz))
        .ok_or_else(|| VoxelError::Config {
            problem: format!("grid {grid:?} has too many cells"),
        })?;
    let mut table = if cells <= DENSE_TABLE_MAX_CELLS {
        Table::Dense(vec![-1; cells])
    } else {
        Table::Sparse(HashMap::new())
    };

    let r = &config.point_cloud_range;
    let vs = &config.voxel_size;
    let max_points = config.max_points_per_voxel;
    let block = max_points * num_features;
    let mut coords: Vec<i32> = Vec::new();
    let mut num_points: Vec<i32> = Vec::new();
    let mut stats = VoxelStats {
        points_in: points.len() / num_features,
        ..VoxelStats::default()
    };

    // Voxel index along one axis, or None when outside [0, n) (NaN included). spconv takes
    // c = floor(q) and keeps 0 <= c < n; for an integer n that is exactly 0 <= q < n, and
    // then truncation is the floor (this avoids a libm call per coordinate).
    let cell = |v: f32, min: f32, size: f32, n: usize| -> Option<usize> {
        let q = (v - min) / size;
        (q >= 0.0 && f64::from(q) < n as f64).then_some(q as usize)
    };

    // Pass 1, spconv's loop: assign voxel ids and slots; remember (point, slot) to copy.
    // Copying in a second pass lets the output be allocated once, at its final size.
    let mut copies: Vec<(usize, usize)> = Vec::with_capacity(stats.points_in);
    for (i, p) in points.chunks_exact(num_features).enumerate() {
        // spconv checks z, then y, then x; any failure drops the point.
        let (Some(z), Some(y), Some(x)) = (
            cell(p[2], r[2], vs[2], nz),
            cell(p[1], r[1], vs[1], ny),
            cell(p[0], r[0], vs[0], nx),
        ) else {
            stats.out_of_grid += 1;
            continue;
        };
        let key = (z * ny + y) * nx + x;
        let id = match table.get(key) {
            Some(id) => id as usize,
            None => {
                if num_points.len() >= config.max_voxels {
                    stats.over_max_voxels += 1;
                    continue;
                }
                let id = num_points.len();
                table.insert(key, id as i32);
                coords.extend_from_slice(&[z as i32, y as i32, x as i32]);
                num_points.push(0);
                id
            }
        };
        let n = num_points[id] as usize;
        if n < max_points {
            copies.push((i, id * max_points + n));
            num_points[id] += 1;
        } else {
            stats.voxel_full += 1;
        }
    }
    stats.points_kept = copies.len();

    // Pass 2: the zero-padded (P, max_points, F) block.
    let mut voxels = vec![0f32; num_points.len() * block];
    for &(i, slot) in &copies {
        let (src, dst) = (i * num_features, slot * num_features);
        voxels[dst..dst + num_features].copy_from_slice(&points[src..src + num_features]);
    }

    Ok(Voxels {
        voxels,
        coords,
        num_points,
        num_features,
        max_points,
        grid_size: grid,
        stats,
    })
}
