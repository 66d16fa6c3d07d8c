//! Pillar feature encoders: OpenPCDet's `PillarVFE` (static voxels) and `DynPillarVFE`
//! (per-point, scatter-max over pillars). Both produce one feature vector per pillar and the
//! pillar's `(y, x)` cell.

use crate::model::Weights;
use crate::model::config::{DataConfig, VfeConfig, VfeKind};
use crate::pointcloud::voxelize::Voxels;

use super::layers::{Unit, UnitError, UnitGrads, UnitKind, UnitSpec};
use crate::nn::{NnError, Tensor};

/// PFN layers of a pillar VFE (`vfe.pfn_layers.{i}`).
#[derive(Clone, Debug)]
pub struct PillarVfe {
    pub kind: VfeKind,
    pub layers: Vec<Unit>,
    cfg: VfeConfig,
    voxel_size: [f32; 3],
    /// Pillar-centre offsets `voxel / 2 + range_min`, computed in f64 then used as f32 like
    /// OpenPCDet's python-float attributes.
    offsets: [f32; 3],
    range_min: [f32; 3],
    grid: [usize; 3],
}

/// Pillar features and their BEV cells, in the order the VFE emits them.
#[derive(Clone, Debug, Default)]
pub struct Pillars {
    /// `P x C`, row-major.
    pub features: Vec<f32>,
    pub channels: usize,
    /// Rows the PFN layers ran on (pillars x max points for static voxels, in-grid points
    /// for dynamic pillars): what their FLOPs scale with.
    pub point_rows: usize,
    /// `(y, x)` cell of each pillar.
    pub cells: Vec<(u32, u32)>,
}

impl Pillars {
    pub fn len(&self) -> usize {
        self.cells.len()
    }
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

impl PillarVfe {
    pub fn load(w: &Weights, cfg: &VfeConfig, data: &DataConfig) -> Result<Self, UnitError> {
        let mut channels = vec![cfg.input_channels(data.used_features.len())];
        channels.extend(&cfg.num_filters);
        let n = channels.len() - 1;
        let mut layers = Vec::with_capacity(n);
        for i in 0..n {
            let last = i + 1 == n;
            // A non-last PFN layer outputs half its filters and concatenates their max.
            let out = if last {
                channels[i + 1]
            } else {
                channels[i + 1] / 2
            };
            let prefix = format!("vfe.pfn_layers.{i}.linear");
            let bn_prefix = format!("vfe.pfn_layers.{i}.norm");
            layers.push(Unit::load(
                w,
                UnitSpec {
                    prefix: &prefix,
                    kind: UnitKind::Linear,
                    in_channels: channels[i],
                    out_channels: out,
                    kernel: 1,
                    bias: !cfg.use_norm,
                    bn: cfg.use_norm.then_some((bn_prefix.as_str(), 1e-3)),
                    relu: true,
                },
            )?);
        }
        let vs = data.voxel_size;
        let r = data.point_cloud_range;
        let offsets = [0, 1, 2].map(|i| (vs[i] as f64 / 2.0 + r[i] as f64) as f32);
        Ok(PillarVfe {
            kind: cfg.kind,
            layers,
            cfg: cfg.clone(),
            voxel_size: vs,
            offsets,
            range_min: [r[0], r[1], r[2]],
            grid: data.grid_size,
        })
    }

    pub fn out_channels(&self) -> usize {
        self.cfg.num_filters.last().copied().unwrap_or(0)
    }

    /// Per-point input features: the point's own features (or all but xyz), the offset from
    /// the pillar's point mean, the offset from the pillar centre, and optionally |xyz|.
    fn point_features(&self, point: &[f32], mean: [f32; 3], cell: [f32; 3], out: &mut Vec<f32>) {
        if self.cfg.use_absolute_xyz {
            out.extend_from_slice(point);
        } else {
            out.extend_from_slice(&point[3..]);
        }
        for i in 0..3 {
            out.push(point[i] - mean[i]);
        }
        for i in 0..3 {
            // coords * voxel (f32 op) + offset (f32 op), as in PyTorch.
            let centre = cell[i] * self.voxel_size[i] + self.offsets[i];
            out.push(point[i] - centre);
        }
        if self.cfg.with_distance {
            let d = (point[0] * point[0] + point[1] * point[1] + point[2] * point[2]).sqrt();
            out.push(d);
        }
    }

    /// `PillarVFE` on static voxels (`P x M x F`, zero padded).
    pub fn forward_voxels(&self, v: &Voxels) -> Result<Pillars, NnError> {
        self.forward_voxels_taped(v, None)
    }

    /// [`Self::forward_voxels`], recording what the backward pass needs in `tape`.
    pub fn forward_voxels_taped(
        &self,
        v: &Voxels,
        tape: Option<&mut PfnTape>,
    ) -> Result<Pillars, NnError> {
        let p = v.len();
        let m = v.max_points;
        let f = v.num_features;
        let cin = self.layers[0].weight.shape[1];
        let mut feats = Vec::with_capacity(p * m * cin);
        let mut row = Vec::with_capacity(cin);
        for i in 0..p {
            let n = v.num_points[i] as usize;
            let pts = &v.voxels[i * m * f..(i + 1) * m * f];
            // Sum over all slots (padding is zero), divided by the real count.
            let mut sum = [0f32; 3];
            for k in 0..m {
                for d in 0..3 {
                    sum[d] += pts[k * f + d];
                }
            }
            let cnt = n as f32;
            let mean = sum.map(|s| s / cnt);
            let [cz, cy, cx] = v.coord(i);
            let cell = [cx as f32, cy as f32, cz as f32];
            for k in 0..m {
                if k < n {
                    row.clear();
                    self.point_features(&pts[k * f..(k + 1) * f], mean, cell, &mut row);
                    feats.extend_from_slice(&row);
                } else {
                    // OpenPCDet zeroes all channels of padded slots before the first linear.
                    feats.extend(std::iter::repeat_n(0.0, cin));
                }
            }
        }
        let features = self.run_pfn(
            feats,
            PillarGroups::Padded {
                pillars: p,
                slots: m,
            },
            tape,
        )?;
        Ok(Pillars {
            channels: self.out_channels(),
            features,
            point_rows: p * m,
            cells: (0..p)
                .map(|i| {
                    let c = v.coord(i);
                    (c[1] as u32, c[2] as u32)
                })
                .collect(),
        })
    }

    /// `DynPillarVFE` on raw points (`N x F`): pillars sorted by `x * ny + y` like
    /// `torch.unique`, no caps, no z filter.
    pub fn forward_points(&self, points: &[f32], num_features: usize) -> Result<Pillars, NnError> {
        self.forward_points_taped(points, num_features, None)
    }

    /// [`Self::forward_points`], recording what the backward pass needs in `tape`.
    pub fn forward_points_taped(
        &self,
        points: &[f32],
        num_features: usize,
        tape: Option<&mut PfnTape>,
    ) -> Result<Pillars, NnError> {
        let (nx, ny) = (self.grid[0], self.grid[1]);
        let n = points.len() / num_features;
        // Pillar index of each in-grid point.
        let mut keys: Vec<(usize, usize)> = Vec::with_capacity(n); // (key, point index)
        for i in 0..n {
            let pt = &points[i * num_features..];
            let ix = ((pt[0] - self.range_min[0]) / self.voxel_size[0]).floor();
            let iy = ((pt[1] - self.range_min[1]) / self.voxel_size[1]).floor();
            if ix >= 0.0 && iy >= 0.0 && (ix as usize) < nx && (iy as usize) < ny {
                keys.push((ix as usize * ny + iy as usize, i));
            }
        }
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by_key(|&k| keys[k].0);
        // inverse[j] = pillar of in-grid point j; unique keys ascending.
        let mut inverse = vec![0u32; keys.len()];
        let mut unique: Vec<usize> = Vec::new();
        for &k in &order {
            if unique.last() != Some(&keys[k].0) {
                unique.push(keys[k].0);
            }
            inverse[k] = (unique.len() - 1) as u32;
        }
        let pcount = unique.len();
        // Scatter mean of xyz (sum then divide, like torch_scatter's scatter_mean).
        let mut sums = vec![[0f32; 3]; pcount];
        let mut counts = vec![0u32; pcount];
        for (j, &(_, i)) in keys.iter().enumerate() {
            let p = inverse[j] as usize;
            for d in 0..3 {
                sums[p][d] += points[i * num_features + d];
            }
            counts[p] += 1;
        }
        let means: Vec<[f32; 3]> = sums
            .iter()
            .zip(&counts)
            .map(|(s, &c)| s.map(|v| v / c as f32))
            .collect();
        let cin = self.layers[0].weight.shape[1];
        let mut feats = Vec::with_capacity(keys.len() * cin);
        let mut row = Vec::with_capacity(cin);
        for (j, &(key, i)) in keys.iter().enumerate() {
            let (ix, iy) = (key / ny, key % ny);
            row.clear();
            // DynPillarVFE's z offset ignores the (single) z cell: cell z = 0.
            self.point_features(
                &points[i * num_features..(i + 1) * num_features],
                means[inverse[j] as usize],
                [ix as f32, iy as f32, 0.0],
                &mut row,
            );
            feats.extend_from_slice(&row);
        }
        let point_rows = inverse.len();
        let features = self.run_pfn(
            feats,
            PillarGroups::Scattered {
                pillars: pcount,
                inverse,
            },
            tape,
        )?;
        Ok(Pillars {
            channels: self.out_channels(),
            features,
            point_rows,
            cells: unique
                .iter()
                .map(|&k| ((k % ny) as u32, (k / ny) as u32))
                .collect(),
        })
    }

    /// Runs the PFN layers on per-point rows and reduces them to one row per pillar.
    fn run_pfn(
        &self,
        mut x: Vec<f32>,
        groups: PillarGroups,
        mut tape: Option<&mut PfnTape>,
    ) -> Result<Vec<f32>, NnError> {
        let rows = groups.rows();
        let mut pooled = Vec::new();
        for (li, layer) in self.layers.iter().enumerate() {
            let cin = x.len().checked_div(rows).unwrap_or(0);
            let input = tape.as_ref().map(|_| x.clone());
            let y = layer.forward_rows(x, rows)?;
            let c = layer.out_channels();
            pooled = groups.max(&y, c);
            let last = li + 1 == self.layers.len();
            // A non-last layer concatenates each point's features with its pillar's max.
            let next = if last {
                Vec::new()
            } else {
                let mut next = Vec::with_capacity(rows * 2 * c);
                for r in 0..rows {
                    let p = groups.pillar_of(r);
                    next.extend_from_slice(&y[r * c..(r + 1) * c]);
                    next.extend_from_slice(&pooled[p * c..(p + 1) * c]);
                }
                next
            };
            if let (Some(t), Some(input)) = (tape.as_deref_mut(), input) {
                t.inputs.push(Tensor::from_vec(&[rows, cin], input));
                t.outputs.push(Tensor::from_vec(&[rows, c], y));
            }
            x = next;
        }
        if let Some(t) = tape {
            t.groups = Some(groups);
        }
        Ok(pooled)
    }

    /// VJP of the PFN layers: from `dL/d(pillar features)` (`P x C`), the gradients of every
    /// PFN unit (in layer order). The max over a pillar's rows passes the gradient to the
    /// first row holding the maximum, as `torch.max(dim)` and `torch_scatter.scatter_max` do.
    pub fn backward(&self, tape: &PfnTape, d_pillars: &[f32]) -> Result<Vec<UnitGrads>, NnError> {
        let groups = tape.groups.as_ref().ok_or_else(|| NnError::Invalid {
            op: "vfe backward",
            msg: "the tape holds no forward pass".into(),
        })?;
        let n = self.layers.len();
        let mut grads = Vec::with_capacity(n);
        // dL/d(pooled max) of the current layer.
        let mut d_pooled = d_pillars.to_vec();
        let mut d_rows: Option<Vec<f32>> = None; // direct row gradient from the concat
        for li in (0..n).rev() {
            let layer = &self.layers[li];
            let y = &tape.outputs[li];
            let c = layer.out_channels();
            let mut dy = d_rows.take().unwrap_or_else(|| vec![0f32; y.data.len()]);
            groups.route_max_grad(&y.data, c, &d_pooled, &mut dy);
            let dy = Tensor::from_vec(&y.shape, dy);
            let (dx, g) = layer.backward(&tape.inputs[li], y, dy, li > 0)?;
            grads.push(g);
            if let Some(dx) = dx {
                // The previous layer's output fed [its rows | its pillar max] into this one.
                let cp = self.layers[li - 1].out_channels();
                let rows = groups.rows();
                let mut direct = Vec::with_capacity(rows * cp);
                let mut pooled = vec![0f32; groups.pillars() * cp];
                for r in 0..rows {
                    let row = &dx.data[r * 2 * cp..(r + 1) * 2 * cp];
                    direct.extend_from_slice(&row[..cp]);
                    let p = groups.pillar_of(r);
                    for (a, b) in pooled[p * cp..(p + 1) * cp].iter_mut().zip(&row[cp..]) {
                        *a += b;
                    }
                }
                d_rows = Some(direct);
                d_pooled = pooled;
            }
        }
        grads.reverse();
        Ok(grads)
    }
}

/// What [`PillarVfe::backward`] needs from a forward pass: each PFN layer's input and output
/// rows and how rows map to pillars.
#[derive(Debug, Default)]
pub struct PfnTape {
    inputs: Vec<Tensor>,
    outputs: Vec<Tensor>,
    groups: Option<PillarGroups>,
}

impl PfnTape {
    /// Each PFN layer's input rows (`rows x in`; a static voxel's padded slots are zero rows).
    pub fn inputs(&self) -> &[Tensor] {
        &self.inputs
    }

    /// Layer `i`'s input rows, moved out of the tape.
    pub fn take_input(&mut self, i: usize) -> Option<Tensor> {
        self.inputs.get_mut(i).map(std::mem::take)
    }
}

/// How per-point rows map to pillars.
#[derive(Debug)]
enum PillarGroups {
    /// `pillars x slots` rows, slot-major inside a pillar (static voxels, padded).
    Padded { pillars: usize, slots: usize },
    /// One row per in-grid point, `inverse[row]` = its pillar.
    Scattered { pillars: usize, inverse: Vec<u32> },
}

impl PillarGroups {
    fn pillars(&self) -> usize {
        match self {
            PillarGroups::Padded { pillars, .. } | PillarGroups::Scattered { pillars, .. } => {
                *pillars
            }
        }
    }

    /// Adds `d_pooled[p][ch]` to `dy` at the first row of pillar `p` whose `y` equals the
    /// pillar's max in channel `ch` (rows in order, as PyTorch's max picks them).
    fn route_max_grad(&self, y: &[f32], c: usize, d_pooled: &[f32], dy: &mut [f32]) {
        let pooled = self.max(y, c);
        let mut taken = vec![false; pooled.len()];
        for r in 0..self.rows() {
            let p = self.pillar_of(r);
            for ch in 0..c {
                let k = p * c + ch;
                if !taken[k] && y[r * c + ch] == pooled[k] {
                    taken[k] = true;
                    dy[r * c + ch] += d_pooled[k];
                }
            }
        }
    }

    fn rows(&self) -> usize {
        match self {
            PillarGroups::Padded { pillars, slots } => pillars * slots,
            PillarGroups::Scattered { inverse, .. } => inverse.len(),
        }
    }

    fn pillar_of(&self, row: usize) -> usize {
        match self {
            PillarGroups::Padded { slots, .. } => row / slots,
            PillarGroups::Scattered { inverse, .. } => inverse[row] as usize,
        }
    }

    /// Max over each pillar's rows (padded slots included, as OpenPCDet does).
    fn max(&self, y: &[f32], c: usize) -> Vec<f32> {
        match self {
            PillarGroups::Padded { pillars, slots } => {
                let mut out = vec![f32::NEG_INFINITY; pillars * c];
                for (p, o) in out.chunks_mut(c).enumerate() {
                    for s in 0..*slots {
                        let r = &y[(p * slots + s) * c..(p * slots + s + 1) * c];
                        for (a, b) in o.iter_mut().zip(r) {
                            *a = a.max(*b);
                        }
                    }
                }
                out
            }
            PillarGroups::Scattered { pillars, inverse } => {
                let mut out = vec![f32::NEG_INFINITY; pillars * c];
                for (r, &p) in inverse.iter().enumerate() {
                    let o = &mut out[p as usize * c..(p as usize + 1) * c];
                    for (a, b) in o.iter_mut().zip(&y[r * c..(r + 1) * c]) {
                        *a = a.max(*b);
                    }
                }
                out
            }
        }
    }
}
