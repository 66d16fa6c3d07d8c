//! A forward pass that stops before every unit, so that a caller can see a unit's input on
//! many scans and change the unit before its output is computed.
//!
//! Recovery stages that refit the network unit by unit, each on inputs from its already
//! refitted upstream (statistics repair, layer-wise reconstruction), would otherwise run
//! one forward pass per unit and scan. A [`Sweep`] per scan keeps what the rest of the
//! pass needs (the current map, finished block outputs for the deblocks, the head input),
//! so walking all units costs one forward pass per scan. Units are visited in
//! [`Detector::units`] order, which is an execution order: PFN layers (or a voxel model's
//! sparse convs, with their rulebooks), the backbone's blocks, its deblocks, the head.

use std::borrow::Cow;
use std::sync::Arc;

use crate::nn::Tensor;
use crate::nn::sparse::{Rulebook, Sites};

use super::backbone::concat_channels;
use super::detector::{Detector, DetectorError, Encoder, StageTimes};
use super::heads::DenseHead;
use super::sparse_backbone::{
    SparseMap, UnitRole, close_residual, height_compression, mean_vfe, rulebook_for, voxel_sites,
};
use super::vfe::PfnTape;

/// One scan's forward pass, paused before unit [`Sweep::unit`].
#[derive(Debug)]
pub struct Sweep<'a> {
    points: &'a [f32],
    unit: usize,
    at: At,
}

#[derive(Debug)]
enum At {
    /// Before PFN layer `layer` (its input is recomputed from the points: the VFE is cheap
    /// and its padded rows are large).
    Pfn {
        layer: usize,
    },
    /// Before sparse conv `unit` of a voxel model's 3-D backbone: its input features `x`
    /// (`n x Cin`), the rulebook it runs with (its output sites), the submanifold rulebook
    /// the next ones may reuse, and (before a residual block's second conv) the block's input.
    Sparse {
        unit: usize,
        x: Tensor,
        rb: Arc<Rulebook>,
        subm: Option<Arc<Rulebook>>,
        identity: Option<Vec<f32>>,
    },
    /// Before unit `k` of backbone block `block`, whose input is `x`; `outs` holds the
    /// outputs of the blocks before it.
    Block {
        block: usize,
        k: usize,
        x: Tensor,
        outs: Vec<Tensor>,
    },
    /// Before deblock `i`: its input is `outs[i]` for a block's deblock, `cat` (the
    /// concatenation of `ups`) for a final one.
    Deblock {
        i: usize,
        outs: Vec<Tensor>,
        ups: Vec<Tensor>,
        cat: Option<Tensor>,
    },
    /// Before head unit `i` (in [`DenseHead::units`] order): its input is `x`; `shared` is
    /// a CenterPoint head's shared-conv output, which every branch starts from.
    Head {
        i: usize,
        x: Tensor,
        shared: Option<Tensor>,
    },
    Done,
}

impl<'a> Sweep<'a> {
    /// A pass of `det` over `points` (`N x num_point_features`), before its first unit.
    pub fn start(det: &Detector, points: &'a [f32]) -> Result<Self, DetectorError> {
        det.check_points(points)?;
        let at = match &det.encoder {
            Encoder::Voxels { backbone, .. } => {
                let voxels = det.voxelize(points, &mut StageTimes::default())?;
                let sites = voxel_sites(&voxels, backbone.sparse_shape)?;
                let x = mean_vfe(&voxels);
                let c = voxels.num_features;
                Self::sparse_unit(
                    det,
                    0,
                    Tensor::from_vec(&[sites.len(), c], x),
                    sites,
                    None,
                    None,
                )?
            }
            Encoder::Pillars(_) if det.encoder.units().is_empty() => Self::after_vfe(det, points)?,
            Encoder::Pillars(_) => At::Pfn { layer: 0 },
        };
        Ok(Sweep {
            points,
            unit: 0,
            at,
        })
    }

    /// Index in [`Detector::units`] of the next unit (its count once done).
    pub fn unit(&self) -> usize {
        self.unit
    }

    pub fn is_done(&self) -> bool {
        matches!(self.at, At::Done)
    }

    /// The rulebook the next unit runs with (sparse convs only).
    pub fn rulebook(&self) -> Option<&Rulebook> {
        match &self.at {
            At::Sparse { rb, .. } => Some(rb),
            _ => None,
        }
    }

    /// The next unit's input under `det`'s current parameters: `rows x in` for a PFN layer
    /// or a sparse conv (its active sites' features; see [`Self::rulebook`]), `[C, H, W]`
    /// otherwise. `None` once done.
    pub fn input(&self, det: &Detector) -> Result<Option<Cow<'_, Tensor>>, DetectorError> {
        Ok(match &self.at {
            At::Pfn { layer } => {
                let mut tape = PfnTape::default();
                det.encode(
                    self.points,
                    &mut StageTimes::default(),
                    Some(&mut tape),
                    None,
                )?;
                tape.take_input(*layer).map(Cow::Owned)
            }
            At::Block { x, .. } | At::Head { x, .. } | At::Sparse { x, .. } => {
                Some(Cow::Borrowed(x))
            }
            At::Deblock { i, outs, cat, .. } => cat.as_ref().or(outs.get(*i)).map(Cow::Borrowed),
            At::Done => None,
        })
    }

    /// Runs the next unit with `det`'s current parameters and moves past it.
    pub fn advance(&mut self, det: &Detector) -> Result<(), DetectorError> {
        let bb = &det.backbone;
        self.at = match std::mem::replace(&mut self.at, At::Done) {
            At::Pfn { layer } if layer + 1 < det.encoder.units().len() => {
                At::Pfn { layer: layer + 1 }
            }
            At::Pfn { .. } => Self::after_vfe(det, self.points)?,
            At::Sparse {
                unit,
                x,
                rb,
                subm,
                identity,
            } => {
                let units = det.encoder.units();
                let u = units[unit];
                let mut y = u.forward_sparse(&x.data, &rb)?;
                let Encoder::Voxels { backbone, .. } = &det.encoder else {
                    return Err(DetectorError::Build {
                        path: det.config.source.display().to_string(),
                        message: "a sparse sweep on a pillar model".into(),
                    });
                };
                let role = backbone.unit_roles()[unit];
                let identity = match role {
                    UnitRole::Conv => None,
                    UnitRole::ResFirst => Some(x.data),
                    UnitRole::ResSecond => {
                        close_residual(&mut y, &identity.unwrap_or_default());
                        None
                    }
                };
                let out_sites = rb.out.clone();
                let c = u.out_channels();
                let y = Tensor::from_vec(&[out_sites.len(), c], y);
                if unit + 1 < units.len() {
                    Self::sparse_unit(det, unit + 1, y, out_sites, subm, identity)?
                } else {
                    let encoded = SparseMap {
                        sites: out_sites,
                        channels: c,
                        features: y.data,
                    };
                    Self::blocks_from(det, 0, height_compression(&encoded), Vec::new())
                }
            }
            At::Block {
                block,
                k,
                x,
                mut outs,
            } => {
                let y = bb.blocks[block][k].forward_map(&x)?;
                if k + 1 < bb.blocks[block].len() {
                    At::Block {
                        block,
                        k: k + 1,
                        x: y,
                        outs,
                    }
                } else {
                    outs.push(y.clone());
                    Self::blocks_from(det, block + 1, y, outs)
                }
            }
            At::Deblock {
                i,
                mut outs,
                mut ups,
                cat,
            } => match cat {
                Some(cat) => Self::head_from(det, bb.deblocks[i].forward_map(&cat)?),
                None => {
                    let input = std::mem::take(&mut outs[i]);
                    ups.push(bb.deblocks[i].forward_map(&input)?);
                    Self::deblocks_from(det, i + 1, outs, ups)
                }
            },
            At::Head { i, x, shared } => {
                let units = det.head.units();
                match &det.head {
                    DenseHead::Anchor(_) => Self::head_unit(units.len(), i + 1, x, shared),
                    DenseHead::Center(h) => {
                        let y = units[i].forward_map(&x)?;
                        let shared = shared.unwrap_or_else(|| y.clone());
                        // Each branch starts from the shared conv's output.
                        let mut start = 1;
                        let mut next = y;
                        for (_, branch) in h.heads.iter().flatten() {
                            if i + 1 == start {
                                next = shared.clone();
                            }
                            start += branch.len();
                        }
                        Self::head_unit(units.len(), i + 1, next, Some(shared))
                    }
                }
            }
            At::Done => At::Done,
        };
        self.unit += 1;
        Ok(())
    }

    /// Before sparse unit `unit`, whose input is `x` at `sites`: builds (or reuses) its
    /// rulebook.
    fn sparse_unit(
        det: &Detector,
        unit: usize,
        x: Tensor,
        sites: Sites,
        mut subm: Option<Arc<Rulebook>>,
        identity: Option<Vec<f32>>,
    ) -> Result<At, DetectorError> {
        let u = det.encoder.units()[unit];
        let rb = rulebook_for(u, &sites, &mut subm)?;
        Ok(At::Sparse {
            unit,
            x,
            rb,
            subm,
            identity,
        })
    }

    /// The BEV map from the points, before the first backbone unit.
    fn after_vfe(det: &Detector, points: &[f32]) -> Result<At, DetectorError> {
        let bev = det
            .encode(points, &mut StageTimes::default(), None, None)?
            .bev;
        Ok(Self::blocks_from(det, 0, bev, Vec::new()))
    }

    /// Block `block` onwards, with input `x` (skipping empty blocks), then the deblocks.
    fn blocks_from(det: &Detector, block: usize, x: Tensor, mut outs: Vec<Tensor>) -> At {
        let bb = &det.backbone;
        for b in block..bb.blocks.len() {
            if !bb.blocks[b].is_empty() {
                return At::Block {
                    block: b,
                    k: 0,
                    x,
                    outs,
                };
            }
            outs.push(x.clone());
        }
        Self::deblocks_from(det, 0, outs, Vec::new())
    }

    /// Deblock `i` onwards; a block without a deblock passes its output through, and a final
    /// deblock (one more than blocks) reads the concatenation.
    fn deblocks_from(det: &Detector, i: usize, mut outs: Vec<Tensor>, mut ups: Vec<Tensor>) -> At {
        let (nb, nd) = (det.backbone.blocks.len(), det.backbone.deblocks.len());
        if i < nb.min(nd) {
            return At::Deblock {
                i,
                outs,
                ups,
                cat: None,
            };
        }
        let taken = ups.len();
        ups.extend(outs.drain(..).skip(taken));
        let cat = concat_channels(ups);
        if nd > nb {
            return At::Deblock {
                i: nb,
                outs: Vec::new(),
                ups: Vec::new(),
                cat: Some(cat),
            };
        }
        Self::head_from(det, cat)
    }

    fn head_from(det: &Detector, bev_features: Tensor) -> At {
        Self::head_unit(det.head.units().len(), 0, bev_features, None)
    }

    fn head_unit(n: usize, i: usize, x: Tensor, shared: Option<Tensor>) -> At {
        if i < n {
            At::Head { i, x, shared }
        } else {
            At::Done
        }
    }
}
