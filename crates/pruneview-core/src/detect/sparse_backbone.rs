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

use std::sync::Arc;

use crate::model::weights::{Weights, WeightsError};
use crate::nn::sparse::{Rulebook, Sites, SparseGeometry};
use crate::nn::{NnError, Tensor, relu_inplace};
use crate::pointcloud::voxelize::Voxels;

pub use super::layers::SparseRule;
use super::layers::{NamedBatchNorm, Unit, UnitGrads, UnitKind};

/// `BatchNorm1d(eps=1e-3)` of every spconv block in OpenPCDet.
const SPARSE_BN_EPS: f32 = 1e-3;
/// State-dict prefix of the 3-D backbone.
const PREFIX: &str = "backbone_3d";

pub use crate::model::config::SparseBackboneKind;

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

/// A sparse conv unit (conv, BatchNorm, and ReLU unless it closes a residual branch) from
/// the weights: conv at `conv`, BatchNorm at `bn`, `cin` input channels.
fn load_unit(
    w: &Weights,
    conv: &str,
    bn: &str,
    rule: SparseRule,
    cin: usize,
    relu: bool,
) -> Result<Unit, WeightsError> {
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
    Unit::new(
        conv.to_string(),
        UnitKind::SparseConv(rule),
        weight,
        bias,
        Some(bn),
        relu,
    )
    .map_err(|e| WeightsError::Invalid {
        path: w.path().to_path_buf(),
        key,
        problem: e.to_string(),
    })
}

#[derive(Clone, Debug)]
enum Step {
    Conv(Box<Unit>),
    /// `relu(unit2(unit1(x)) + x)`.
    Res(Box<(Unit, Unit)>),
}

impl Step {
    /// The unit whose output the step's output has the channels of.
    fn last(&self) -> &Unit {
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
                        Step::Conv(Box::new(load_unit(
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
                        let a = load_unit(
                            w,
                            &format!("{p}.conv1"),
                            &format!("{p}.bn1"),
                            SUBM,
                            cin,
                            true,
                        )?;
                        let b = load_unit(
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
            if let UnitKind::SparseConv(SparseRule::Strided(g)) = u.kind {
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
    pub fn units(&self) -> Vec<&Unit> {
        let mut v = Vec::new();
        for s in self.stages.iter().flatten() {
            match s {
                Step::Conv(u) => v.push(&**u),
                Step::Res(ab) => v.extend([&ab.0, &ab.1]),
            }
        }
        v
    }

    pub fn units_mut(&mut self) -> Vec<&mut Unit> {
        let mut v = Vec::new();
        for s in self.stages.iter_mut().flatten() {
            match s {
                Step::Conv(u) => v.push(&mut **u),
                Step::Res(ab) => {
                    let (a, b) = &mut **ab;
                    v.extend([a, b]);
                }
            }
        }
        v
    }

    /// Runs the backbone on voxel features `x` (`n x Cin`) at `sites`: the outputs of the
    /// named stages ([`STAGE_NAMES`]) in order, and what each unit did.
    pub fn forward(&self, sites: Sites, x: Vec<f32>) -> Result<SparseForward, NnError> {
        self.forward_taped(sites, x, None)
    }

    /// [`Self::forward`], recording in `tape` (when given) what [`Self::backward`] needs.
    pub fn forward_taped(
        &self,
        sites: Sites,
        x: Vec<f32>,
        mut tape: Option<&mut SparseTape>,
    ) -> Result<SparseForward, NnError> {
        let mut map = SparseMap {
            channels: x.len().checked_div(sites.len()).unwrap_or(0),
            sites,
            features: x,
        };
        let mut run = Run {
            subm: None,
            units: Vec::new(),
        };
        if let Some(t) = tape.as_deref_mut() {
            t.steps.clear();
        }
        let mut stages = Vec::new();
        for (i, stage) in self.stages.iter().enumerate() {
            for step in stage {
                let record = tape.is_some();
                match step {
                    Step::Conv(u) => {
                        let (out, rec) = run.apply(u, map, record)?;
                        if let (Some(t), Some(rec)) = (tape.as_deref_mut(), rec) {
                            t.steps.push(StepRecord::Conv(rec));
                        }
                        map = out;
                    }
                    Step::Res(ab) => {
                        let (a, b) = &**ab;
                        let identity = map.features.clone();
                        let (mid, rec_a) = run.apply(a, map, record)?;
                        let (mut out, rec_b) = run.apply(b, mid, record)?;
                        close_residual(&mut out.features, &identity);
                        if let (Some(t), Some(a), Some(b)) = (tape.as_deref_mut(), rec_a, rec_b) {
                            t.steps.push(StepRecord::Res {
                                a,
                                b,
                                out: out.features.clone(),
                            });
                        }
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

    /// Vector-Jacobian product in eval mode: from `d_encoded` = dL/d(`encoded` features), the
    /// gradients of every unit in [`Self::units`] order (no gradient of the voxel features:
    /// MeanVFE has no parameters).
    pub fn backward(
        &self,
        tape: &SparseTape,
        d_encoded: Vec<f32>,
    ) -> Result<Vec<UnitGrads>, NnError> {
        let steps: Vec<&Step> = self.stages.iter().flatten().collect();
        if tape.steps.len() != steps.len() {
            return Err(NnError::Invalid {
                op: "sparse backbone backward",
                msg: "the tape holds no forward pass of this backbone".into(),
            });
        }
        let mut grads = Vec::new();
        let mut d = d_encoded;
        for (k, (step, rec)) in steps.iter().zip(&tape.steps).enumerate().rev() {
            // The first unit's input is the voxel features: no gradient needed there.
            let need_dx = k > 0;
            match (step, rec) {
                (Step::Conv(u), StepRecord::Conv(r)) => {
                    let (dx, g) = u.backward_sparse(&r.x, &r.y, d, &r.rb, need_dx)?;
                    grads.push(g);
                    d = dx.unwrap_or_default();
                }
                (Step::Res(ab), StepRecord::Res { a, b, out }) => {
                    let (ua, ub) = &**ab;
                    let mut d_sum = d;
                    crate::nn::vjp::relu_vjp_inplace(&mut d_sum, out);
                    let (d_mid, gb) = ub.backward_sparse(&b.x, &b.y, d_sum.clone(), &b.rb, true)?;
                    let d_mid = d_mid.unwrap_or_default();
                    let (dx, ga) = ua.backward_sparse(&a.x, &a.y, d_mid, &a.rb, need_dx)?;
                    grads.push(gb);
                    grads.push(ga);
                    d = match dx {
                        Some(mut dx) => {
                            for (v, s) in dx.iter_mut().zip(&d_sum) {
                                *v += s;
                            }
                            dx
                        }
                        None => Vec::new(),
                    };
                }
                _ => {
                    return Err(NnError::Invalid {
                        op: "sparse backbone backward",
                        msg: "the tape does not match the backbone's steps".into(),
                    });
                }
            }
        }
        grads.reverse();
        Ok(grads)
    }
}

/// What a taped forward pass of the 3-D backbone keeps for its backward pass: each unit's
/// input and output features and rulebook (a few MB for SECOND).
#[derive(Debug, Default)]
pub struct SparseTape {
    steps: Vec<StepRecord>,
}

impl SparseTape {
    /// Unit `k`'s input features and rulebook (in [`SparseBackbone::units`] order).
    pub fn unit_input(&self, k: usize) -> Option<(&[f32], &Rulebook)> {
        let mut i = 0;
        for s in &self.steps {
            let units: &[&UnitRecord] = match s {
                StepRecord::Conv(r) => &[r],
                StepRecord::Res { a, b, .. } => &[a, b],
            };
            for r in units {
                if i == k {
                    return Some((&r.x, &r.rb));
                }
                i += 1;
            }
        }
        None
    }
}

#[derive(Debug)]
enum StepRecord {
    Conv(UnitRecord),
    /// A residual block: its two units, and its output after the sum and ReLU.
    Res {
        a: UnitRecord,
        b: UnitRecord,
        out: Vec<f32>,
    },
}

/// One unit's input `x`, output `y` (after its ReLU, if any) and rulebook.
#[derive(Debug)]
struct UnitRecord {
    x: Vec<f32>,
    y: Vec<f32>,
    rb: Arc<Rulebook>,
}

/// Where a unit sits among the backbone's steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitRole {
    /// A conv + BN + ReLU step.
    Conv,
    /// The first conv of a residual block (its input is the block's identity).
    ResFirst,
    /// The second conv of a residual block: the identity is added after it, then a ReLU.
    ResSecond,
}

impl SparseBackbone {
    /// Each unit's role, in [`Self::units`] order.
    pub fn unit_roles(&self) -> Vec<UnitRole> {
        let mut v = Vec::new();
        for s in self.stages.iter().flatten() {
            match s {
                Step::Conv(_) => v.push(UnitRole::Conv),
                Step::Res(_) => v.extend([UnitRole::ResFirst, UnitRole::ResSecond]),
            }
        }
        v
    }
}

/// The end of a `SparseBasicBlock`: `relu(y + identity)`, in place (`y` is its second
/// conv's output after BatchNorm, `identity` the block's input).
pub fn close_residual(y: &mut [f32], identity: &[f32]) {
    for (v, i) in y.iter_mut().zip(identity) {
        *v += i;
    }
    relu_inplace(y);
}

/// The rulebook sparse unit `u` runs with on `sites`: `subm` when it is a submanifold conv
/// and `subm` was built for these sites (spconv's `indice_key` reuse), else a new one (kept
/// in `subm` for the submanifold convs after it).
pub fn rulebook_for(
    u: &Unit,
    sites: &Sites,
    subm: &mut Option<Arc<Rulebook>>,
) -> Result<Arc<Rulebook>, NnError> {
    match u.kind {
        UnitKind::SparseConv(SparseRule::Submanifold) => {
            if let Some(rb) = subm.as_ref().filter(|rb| rb.out == *sites) {
                return Ok(Arc::clone(rb));
            }
            let rb = Arc::new(Rulebook::submanifold(sites, [3; 3])?);
            *subm = Some(Arc::clone(&rb));
            Ok(rb)
        }
        UnitKind::SparseConv(SparseRule::Strided(g)) => Ok(Arc::new(Rulebook::strided(sites, g)?)),
        _ => Err(NnError::Invalid {
            op: "sparse backbone",
            msg: format!("{} is not a sparse conv", u.weight_name()),
        }),
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
    subm: Option<Arc<Rulebook>>,
    units: Vec<SparseUnitRun>,
}

impl Run {
    /// One unit on `map`, building (or reusing) the rulebook its rule needs; with `record`,
    /// also what its backward pass needs.
    fn apply(
        &mut self,
        u: &Unit,
        map: SparseMap,
        record: bool,
    ) -> Result<(SparseMap, Option<UnitRecord>), NnError> {
        let t = std::time::Instant::now();
        let rb = rulebook_for(u, &map.sites, &mut self.subm)?;
        let y = u.forward_sparse(&map.features, &rb)?;
        self.units.push(SparseUnitRun {
            pairs: rb.pair_count(),
            sites: rb.out.len(),
            time: t.elapsed(),
        });
        let out = SparseMap {
            sites: rb.out.clone(),
            channels: u.out_channels(),
            features: y,
        };
        let rec = record.then(|| UnitRecord {
            x: map.features,
            y: out.features.clone(),
            rb,
        });
        Ok((out, rec))
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

/// The VJP of [`height_compression`]: dL/d(features) of `map`'s sites from dL/d(BEV map).
pub fn height_compression_backward(map: &SparseMap, d_bev: &Tensor) -> Vec<f32> {
    let [d, h, w] = map.sites.shape;
    let c = map.channels;
    let mut out = vec![0f32; map.sites.len() * c];
    for (i, s) in map.sites.coords.iter().enumerate() {
        let [z, y, x] = s.map(|v| v as usize);
        for ch in 0..c {
            out[i * c + ch] = d_bev.data[((ch * d + z) * h + y) * w + x];
        }
    }
    out
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
