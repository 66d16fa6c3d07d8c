//! The voxel detectors' 3-D part (SECOND, CenterPoint-voxel, and the two-stage models built
//! on the same backbone): `MeanVFE`, OpenPCDet's spconv backbones `VoxelBackBone8x` and
//! `VoxelResBackBone8x`, and `HeightCompression` to a BEV map.
//!
//! The backbones' layer structure is fixed in OpenPCDet's code (not in the YAML), so it is a
//! table here ([`SparseBackboneKind::stages`]); channel counts come from the weight shapes.
//! Every conv is followed by an eval-mode `BatchNorm1d` (eps 1e-3) and ReLU; a
//! `SparseBasicBlock` is conv-BN-ReLU-conv-BN plus its input, then ReLU, and its convs carry
//! biases. Submanifold convs of one stage share a rulebook (spconv's `indice_key`), rebuilt
//! when a strided conv changes the sites.

use crate::model::weights::{Weights, WeightsError};
use crate::nn::sparse::{Rulebook, Sites, SparseConv3d, SparseGeometry};
use crate::nn::{NnError, Tensor, batchnorm_inplace, relu_inplace};
use crate::pointcloud::voxelize::Voxels;

use super::layers::NamedBatchNorm;

/// `BatchNorm1d(eps=1e-3)` of every spconv block in OpenPCDet.
const SPARSE_BN_EPS: f32 = 1e-3;
/// State-dict prefix of the 3-D backbone.
const PREFIX: &str = "backbone_3d";

pub use crate::model::config::SparseBackboneKind;

/// How a conv finds its output sites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SparseRule {
    /// `SubMConv3d` (3x3x3): the input sites.
    Submanifold,
    /// `SparseConv3d` with this kernel, stride and padding.
    Strided(SparseGeometry),
}

/// One step of the architecture table: a conv + BN + ReLU, or a residual block.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// Conv at `{name}.0`, BatchNorm at `{name}.1`.
    Conv(&'static str, SparseRule),
    /// `SparseBasicBlock` at `name` (`conv1`, `bn1`, `conv2`, `bn2`).
    Res(&'static str),
}

const SUBM: SparseRule = SparseRule::Submanifold;

const fn down(padding: [usize; 3]) -> SparseRule {
    SparseRule::Strided(SparseGeometry {
        kernel: [3; 3],
        stride: [2; 3],
        padding,
    })
}

/// `conv_out`: kernel (3, 1, 1), stride (2, 1, 1), no padding.
const CONV_OUT: SparseRule = SparseRule::Strided(SparseGeometry {
    kernel: [3, 1, 1],
    stride: [2, 1, 1],
    padding: [0; 3],
});

/// The stages whose outputs OpenPCDet names (`x_conv1..4`, then `encoded` after `conv_out`);
/// `conv_input` runs first.
pub const STAGE_NAMES: [&str; 5] = ["x_conv1", "x_conv2", "x_conv3", "x_conv4", "encoded"];

impl SparseBackboneKind {
    /// `conv_input`, then one list per named stage.
    fn stages(self) -> [Vec<Layout>; 6] {
        use Layout::{Conv, Res};
        match self {
            Self::Plain8x => [
                vec![Conv("conv_input", SUBM)],
                vec![Conv("conv1.0", SUBM)],
                vec![
                    Conv("conv2.0", down([1; 3])),
                    Conv("conv2.1", SUBM),
                    Conv("conv2.2", SUBM),
                ],
                vec![
                    Conv("conv3.0", down([1; 3])),
                    Conv("conv3.1", SUBM),
                    Conv("conv3.2", SUBM),
                ],
                vec![
                    Conv("conv4.0", down([0, 1, 1])),
                    Conv("conv4.1", SUBM),
                    Conv("conv4.2", SUBM),
                ],
                vec![Conv("conv_out", CONV_OUT)],
            ],
            Self::Res8x => [
                vec![Conv("conv_input", SUBM)],
                vec![Res("conv1.0"), Res("conv1.1")],
                vec![
                    Conv("conv2.0", down([1; 3])),
                    Res("conv2.1"),
                    Res("conv2.2"),
                ],
                vec![
                    Conv("conv3.0", down([1; 3])),
                    Res("conv3.1"),
                    Res("conv3.2"),
                ],
                vec![
                    Conv("conv4.0", down([0, 1, 1])),
                    Res("conv4.1"),
                    Res("conv4.2"),
                ],
                vec![Conv("conv_out", CONV_OUT)],
            ],
        }
    }
}

/// A sparse conv with its BatchNorm (and ReLU unless it closes a residual branch).
#[derive(Clone, Debug)]
pub struct SparseUnit {
    /// State-dict prefix of the weight (`{prefix}.weight`).
    pub prefix: String,
    pub rule: SparseRule,
    /// The weight in spconv 2.3's layout `[Cout, kz, ky, kx, Cin]` (unfolded).
    pub weight: Tensor,
    pub bias: Option<Vec<f32>>,
    pub bn: NamedBatchNorm,
    pub relu: bool,
    conv: SparseConv3d,
}

impl SparseUnit {
    fn load(
        w: &Weights,
        conv: &str,
        bn: &str,
        rule: SparseRule,
        cin: usize,
        relu: bool,
    ) -> Result<Self, WeightsError> {
        let kernel = match rule {
            SparseRule::Submanifold => [3; 3],
            SparseRule::Strided(g) => g.kernel,
        };
        let key = format!("{conv}.weight");
        // Cout from the shape, in either spconv layout (`sparse_conv_weight` checks the rest).
        let cout = match w.shape(&key) {
            Some(&[c, a, b, d, _]) if [a, b, d] == kernel => c,
            Some(&[_, _, _, _, c]) => c,
            _ => 0,
        };
        let [kz, ky, kx] = kernel;
        let weight = w.sparse_conv_weight(&key, [cout, kz, ky, kx, cin])?;
        let bias_key = format!("{conv}.bias");
        let bias = if w.contains(&bias_key) {
            Some(w.tensor(&bias_key, &[cout])?.data)
        } else {
            None
        };
        let bn = NamedBatchNorm::load(w, bn, cout, SPARSE_BN_EPS)?;
        let op =
            SparseConv3d::new(&weight, bias.as_deref()).map_err(|e| WeightsError::Invalid {
                path: w.path().to_path_buf(),
                key: key.clone(),
                problem: e.to_string(),
            })?;
        Ok(SparseUnit {
            prefix: conv.to_string(),
            rule,
            weight,
            bias,
            bn,
            relu,
            conv: op,
        })
    }

    pub fn out_channels(&self) -> usize {
        self.weight.shape[0]
    }

    pub fn in_channels(&self) -> usize {
        self.weight.shape[4]
    }

    fn forward(&self, x: &[f32], rb: &Rulebook) -> Result<Vec<f32>, NnError> {
        let mut y = self.conv.forward(x, rb)?;
        let c = self.out_channels();
        let mut t = Tensor::from_vec(&[y.len() / c.max(1), c], std::mem::take(&mut y));
        batchnorm_inplace(&mut t, &self.bn.bn, 1)?;
        if self.relu {
            relu_inplace(&mut t.data);
        }
        Ok(t.data)
    }
}

#[derive(Clone, Debug)]
enum Step {
    Conv(Box<SparseUnit>),
    /// `relu(unit2(unit1(x)) + x)`.
    Res(Box<(SparseUnit, SparseUnit)>),
}

impl Step {
    /// The unit whose output the step's output has the channels of.
    fn last(&self) -> &SparseUnit {
        match self {
            Step::Conv(u) => u,
            Step::Res(ab) => &ab.1,
        }
    }
}

/// A loaded 3-D backbone.
#[derive(Clone, Debug)]
pub struct SparseBackbone {
    pub kind: SparseBackboneKind,
    /// The input grid `[D, H, W]` = `[nz + 1, ny, nx]` (OpenPCDet's `sparse_shape`).
    pub sparse_shape: [usize; 3],
    stages: Vec<Vec<Step>>,
}

/// A sparse tensor: sites and their `n x channels` features.
#[derive(Clone, Debug)]
pub struct SparseMap {
    pub sites: Sites,
    pub features: Vec<f32>,
    pub channels: usize,
}

impl SparseBackbone {
    /// Loads the backbone from `backbone_3d.*` weights for `in_channels` voxel features on
    /// the voxel grid `[nx, ny, nz]`.
    pub fn load(
        w: &Weights,
        kind: SparseBackboneKind,
        in_channels: usize,
        grid_size: [usize; 3],
    ) -> Result<Self, WeightsError> {
        let mut cin = in_channels;
        let mut stages = Vec::new();
        for layouts in kind.stages() {
            let mut steps = Vec::new();
            for l in layouts {
                let step = match l {
                    Layout::Conv(name, rule) => {
                        let p = format!("{PREFIX}.{name}");
                        Step::Conv(Box::new(SparseUnit::load(
                            w,
                            &format!("{p}.0"),
                            &format!("{p}.1"),
                            rule,
                            cin,
                            true,
                        )?))
                    }
                    Layout::Res(name) => {
                        let p = format!("{PREFIX}.{name}");
                        let a = SparseUnit::load(
                            w,
                            &format!("{p}.conv1"),
                            &format!("{p}.bn1"),
                            SUBM,
                            cin,
                            true,
                        )?;
                        let b = SparseUnit::load(
                            w,
                            &format!("{p}.conv2"),
                            &format!("{p}.bn2"),
                            SUBM,
                            a.out_channels(),
                            false,
                        )?;
                        if b.out_channels() != cin {
                            return Err(WeightsError::Invalid {
                                path: w.path().to_path_buf(),
                                key: format!("{}.weight", b.prefix),
                                problem: format!(
                                    "a residual block must keep its {cin} channels, this conv gives {}",
                                    b.out_channels()
                                ),
                            });
                        }
                        Step::Res(Box::new((a, b)))
                    }
                };
                cin = step.last().out_channels();
                steps.push(step);
            }
            stages.push(steps);
        }
        let [nx, ny, nz] = grid_size;
        Ok(SparseBackbone {
            kind,
            sparse_shape: [nz + 1, ny, nx],
            stages,
        })
    }

    /// Channels of `encoded`.
    pub fn out_channels(&self) -> usize {
        self.stages
            .last()
            .and_then(|s| s.last())
            .map_or(0, |s| s.last().out_channels())
    }

    /// The grid `[D, H, W]` of `encoded` (what HeightCompression flattens to `C * D` BEV
    /// channels on an `H x W` map).
    pub fn out_shape(&self) -> Result<[usize; 3], NnError> {
        let mut shape = self.sparse_shape;
        for u in self.units() {
            if let SparseRule::Strided(g) = u.rule {
                shape = g.out_shape(shape).map_err(|e| NnError::Invalid {
                    op: "sparse 3-D backbone",
                    msg: format!(
                        "{}: its input grid [D, H, W] is {shape:?} after the layers before it, \
                         too small for it ({e}); the voxel grid is too shallow or too narrow",
                        u.prefix
                    ),
                })?;
            }
        }
        Ok(shape)
    }

    /// Every conv in execution order.
    pub fn units(&self) -> Vec<&SparseUnit> {
        let mut v = Vec::new();
        for s in self.stages.iter().flatten() {
            match s {
                Step::Conv(u) => v.push(&**u),
                Step::Res(ab) => v.extend([&ab.0, &ab.1]),
            }
        }
        v
    }

    /// Runs the backbone on voxel features `x` (`n x Cin`) at `sites`: the outputs of the
    /// named stages ([`STAGE_NAMES`]) in order, and each unit's rulebook pair count.
    pub fn forward(&self, sites: Sites, x: Vec<f32>) -> Result<SparseForward, NnError> {
        let mut map = SparseMap {
            channels: if sites.is_empty() {
                0
            } else {
                x.len() / sites.len()
            },
            sites,
            features: x,
        };
        let mut run = Run {
            subm: None,
            units: Vec::new(),
        };
        let mut stages = Vec::new();
        for (i, stage) in self.stages.iter().enumerate() {
            for step in stage {
                match step {
                    Step::Conv(u) => map = run.apply(u, map)?,
                    Step::Res(ab) => {
                        let (a, b) = &**ab;
                        let identity = map.features.clone();
                        let mid = run.apply(a, map)?;
                        let mut out = run.apply(b, mid)?;
                        for (y, x) in out.features.iter_mut().zip(&identity) {
                            *y += x;
                        }
                        relu_inplace(&mut out.features);
                        map = out;
                    }
                }
            }
            if i > 0 {
                stages.push(map.clone());
            }
        }
        Ok(SparseForward {
            stages,
            units: run.units,
        })
    }
}

/// What [`SparseBackbone::forward`] returns.
#[derive(Clone, Debug)]
pub struct SparseForward {
    /// The sparse tensors after each of [`STAGE_NAMES`].
    pub stages: Vec<SparseMap>,
    /// What each unit did, in [`SparseBackbone::units`] order.
    pub units: Vec<SparseUnitRun>,
}

/// One sparse conv of one forward pass.
#[derive(Clone, Copy, Debug)]
pub struct SparseUnitRun {
    /// (in, out) pairs of its rulebook: its FLOPs on this scan are `2 x pairs x Cin x Cout`.
    pub pairs: usize,
    /// Active output sites.
    pub sites: usize,
    /// Wall time, rulebook included (a shared submanifold rulebook counts for the unit that
    /// built it).
    pub time: std::time::Duration,
}

impl SparseForward {
    /// `encoded`, the input of HeightCompression.
    pub fn encoded(&self) -> Option<&SparseMap> {
        self.stages.last()
    }
}

/// The state of one forward pass: the current submanifold rulebook (spconv's `indice_key`
/// reuse) and what the units so far did.
struct Run {
    subm: Option<Rulebook>,
    units: Vec<SparseUnitRun>,
}

impl Run {
    /// One unit on `map`, building (or reusing) the rulebook its rule needs.
    fn apply(&mut self, u: &SparseUnit, map: SparseMap) -> Result<SparseMap, NnError> {
        let t = std::time::Instant::now();
        let (y, sites, pairs) = match u.rule {
            SparseRule::Submanifold => {
                if self.subm.as_ref().is_none_or(|rb| rb.out != map.sites) {
                    self.subm = Some(Rulebook::submanifold(&map.sites, [3; 3])?);
                }
                let rb = self.subm.as_ref().expect("built above");
                (u.forward(&map.features, rb)?, map.sites, rb.pair_count())
            }
            SparseRule::Strided(g) => {
                let rb = Rulebook::strided(&map.sites, g)?;
                let y = u.forward(&map.features, &rb)?;
                let pairs = rb.pair_count();
                (y, rb.out, pairs)
            }
        };
        self.units.push(SparseUnitRun {
            pairs,
            sites: sites.len(),
            time: t.elapsed(),
        });
        Ok(SparseMap {
            sites,
            features: y,
            channels: u.out_channels(),
        })
    }
}

/// `MeanVFE`: each voxel's mean point (every feature column), `P x num_features`.
pub fn mean_vfe(v: &Voxels) -> Vec<f32> {
    let f = v.num_features;
    let mut out = vec![0f32; v.len() * f];
    for (p, row) in out.chunks_exact_mut(f.max(1)).enumerate() {
        let n = v.num_points[p].max(0) as usize;
        for point in v.voxel(p).chunks_exact(f).take(n) {
            for (o, &x) in row.iter_mut().zip(point) {
                *o += x;
            }
        }
        let norm = (n as f32).max(1.0);
        for o in row.iter_mut() {
            *o /= norm;
        }
    }
    out
}

/// The voxel sites of `v` on the backbone's grid `[D, H, W]`.
pub fn voxel_sites(v: &Voxels, sparse_shape: [usize; 3]) -> Result<Sites, NnError> {
    let coords = (0..v.len())
        .map(|p| v.coord(p).map(|c| c.max(0) as u32))
        .collect();
    Sites::new(sparse_shape, coords)
}

/// `HeightCompression`: the sparse map made dense, `[C, D, H, W]` viewed as `[C * D, H, W]`
/// (BEV channel `c * D + z`).
pub fn height_compression(map: &SparseMap) -> Tensor {
    let [d, h, w] = map.sites.shape;
    let c = map.channels;
    let mut bev = vec![0f32; c * d * h * w];
    for (i, s) in map.sites.coords.iter().enumerate() {
        let [z, y, x] = s.map(|v| v as usize);
        for ch in 0..c {
            bev[((ch * d + z) * h + y) * w + x] = map.features[i * c + ch];
        }
    }
    Tensor::from_vec(&[c * d, h, w], bev)
}
