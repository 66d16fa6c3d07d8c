//! `PointPillarScatter` and OpenPCDet's `BaseBEVBackbone`: strided conv blocks, each
//! upsampled by a deblock, concatenated on channels.

use crate::model::Weights;
use crate::model::config::BackboneConfig;
use crate::nn::{NnError, Tensor};

use super::layers::{Unit, UnitError, UnitGrads, UnitKind, UnitSpec};
use super::vfe::Pillars;

/// Scatters pillar features into a dense `[C, ny, nx]` BEV map (last write wins).
pub fn scatter(pillars: &Pillars, ny: usize, nx: usize) -> Tensor {
    let c = pillars.channels;
    let mut bev = Tensor::zeros(&[c, ny, nx]);
    let plane = ny * nx;
    for (p, &(y, x)) in pillars.cells.iter().enumerate() {
        let idx = y as usize * nx + x as usize;
        let f = &pillars.features[p * c..(p + 1) * c];
        for (ch, v) in f.iter().enumerate() {
            bev.data[ch * plane + idx] = *v;
        }
    }
    bev
}

#[derive(Clone, Debug)]
pub struct BevBackbone {
    /// `blocks[i]`: the strided conv first, then `LAYER_NUMS[i]` stride-1 convs.
    pub blocks: Vec<Vec<Unit>>,
    /// One per block (upsample or downsample to a common size), plus an optional final one.
    pub deblocks: Vec<Unit>,
}

impl BevBackbone {
    pub fn load(w: &Weights, cfg: &BackboneConfig, in_channels: usize) -> Result<Self, UnitError> {
        let bn_eps = 1e-3;
        let mut blocks = Vec::new();
        let mut deblocks = Vec::new();
        let mut c_in = in_channels;
        for (i, &nf) in cfg.num_filters.iter().enumerate() {
            let mut units = Vec::new();
            // ZeroPad2d(1) + Conv2d(padding=0) == Conv2d(padding=1).
            for k in 0..=cfg.layer_nums[i] {
                let (conv, bn) = (
                    format!("backbone_2d.blocks.{i}.{}", 1 + 3 * k),
                    format!("backbone_2d.blocks.{i}.{}", 2 + 3 * k),
                );
                let stride = if k == 0 { cfg.layer_strides[i] } else { 1 };
                units.push(Unit::load(
                    w,
                    UnitSpec {
                        prefix: &conv,
                        kind: UnitKind::Conv { stride, padding: 1 },
                        in_channels: if k == 0 { c_in } else { nf },
                        out_channels: nf,
                        kernel: 3,
                        bias: false,
                        bn: Some((&bn, bn_eps)),
                        relu: true,
                    },
                )?);
            }
            blocks.push(units);
            if let Some(&stride) = cfg.upsample_strides.get(i) {
                let out = cfg.num_upsample_filters[i];
                let (conv, bn) = (
                    format!("backbone_2d.deblocks.{i}.0"),
                    format!("backbone_2d.deblocks.{i}.1"),
                );
                let (kind, kernel) =
                    if stride > 1.0 || (stride == 1.0 && !cfg.use_conv_for_no_stride) {
                        let s = stride.round() as usize;
                        (UnitKind::ConvTranspose { stride: s }, s)
                    } else {
                        let s = (1.0 / stride).round() as usize;
                        (
                            UnitKind::Conv {
                                stride: s,
                                padding: 0,
                            },
                            s,
                        )
                    };
                deblocks.push(Unit::load(
                    w,
                    UnitSpec {
                        prefix: &conv,
                        kind,
                        in_channels: nf,
                        out_channels: out,
                        kernel,
                        bias: false,
                        bn: Some((&bn, bn_eps)),
                        relu: true,
                    },
                )?);
            }
            c_in = nf;
        }
        let n = cfg.num_filters.len();
        if cfg.upsample_strides.len() > n {
            let c: usize = cfg.num_upsample_filters.iter().sum();
            let s = cfg.upsample_strides[n].round() as usize;
            let (conv, bn) = (
                format!("backbone_2d.deblocks.{n}.0"),
                format!("backbone_2d.deblocks.{n}.1"),
            );
            deblocks.push(Unit::load(
                w,
                UnitSpec {
                    prefix: &conv,
                    kind: UnitKind::ConvTranspose { stride: s },
                    in_channels: c,
                    out_channels: c,
                    kernel: s,
                    bias: false,
                    bn: Some((&bn, bn_eps)),
                    relu: true,
                },
            )?);
        }
        Ok(BevBackbone { blocks, deblocks })
    }

    /// Output channels of `spatial_features_2d`.
    pub fn out_channels(&self) -> usize {
        let n = self.blocks.len();
        if self.deblocks.len() > n {
            return self.deblocks[n].out_channels();
        }
        if self.deblocks.is_empty() {
            return self
                .blocks
                .iter()
                .map(|b| b.last().map_or(0, Unit::out_channels))
                .sum();
        }
        self.deblocks.iter().map(Unit::out_channels).sum()
    }

    pub fn forward(&self, bev: Tensor) -> Result<Tensor, NnError> {
        self.forward_taped(bev, None)
    }

    /// [`Self::forward`], keeping every unit's input and output in `tape` for the backward
    /// pass.
    pub fn forward_taped(
        &self,
        bev: Tensor,
        mut tape: Option<&mut BackboneTape>,
    ) -> Result<Tensor, NnError> {
        let mut x = bev;
        let mut ups: Vec<Tensor> = Vec::with_capacity(self.blocks.len());
        for (i, block) in self.blocks.iter().enumerate() {
            let mut maps = Vec::new();
            for unit in block {
                let y = unit.forward_map(&x)?;
                if tape.is_some() {
                    maps.push(std::mem::replace(&mut x, y));
                } else {
                    x = y;
                }
            }
            let up = match self.deblocks.get(i) {
                Some(d) => d.forward_map(&x)?,
                None => x.clone(),
            };
            if let Some(t) = tape.as_deref_mut() {
                maps.push(x.clone());
                t.blocks.push(maps);
                t.ups.push(up.clone());
            }
            ups.push(up);
        }
        let mut out = concat_channels(ups);
        if let Some(last) = self.deblocks.get(self.blocks.len()) {
            let y = last.forward_map(&out)?;
            let input = std::mem::replace(&mut out, y);
            if let Some(t) = tape {
                t.final_in = Some(input);
            }
        }
        Ok(out)
    }

    /// VJP of the backbone: from `dL/d(output)` (and the output itself, for the ReLU of a
    /// final deblock), returns `dL/d(BEV input)` and the gradients of every unit in
    /// [`Self::units`] order.
    pub fn backward(
        &self,
        tape: &BackboneTape,
        out: &Tensor,
        d_out: Tensor,
    ) -> Result<(Tensor, Vec<UnitGrads>), NnError> {
        let nb = self.blocks.len();
        let mut deblock_grads: Vec<Option<UnitGrads>> = vec![None; self.deblocks.len()];
        let mut d_cat = d_out;
        if let (Some(last), Some(input)) = (self.deblocks.get(nb), &tape.final_in) {
            let (dx, g) = last.backward(input, out, d_cat, true)?;
            deblock_grads[nb] = Some(g);
            d_cat = dx.ok_or_else(missing_dx)?;
        }
        // Split the concatenated gradient into one slice per block output.
        let (h, w) = (d_cat.shape[1], d_cat.shape[2]);
        let mut slices = Vec::with_capacity(nb);
        let mut start = 0;
        for up in &tape.ups {
            let c = up.shape[0];
            slices.push(Tensor::from_vec(
                &[c, h, w],
                d_cat.data[start * h * w..(start + c) * h * w].to_vec(),
            ));
            start += c;
        }
        let mut block_grads: Vec<Vec<UnitGrads>> = vec![Vec::new(); nb];
        let mut d_next: Option<Tensor> = None; // from the following block's first unit
        for i in (0..nb).rev() {
            let maps = &tape.blocks[i];
            let block_out = &maps[maps.len() - 1];
            let slice = std::mem::take(&mut slices[i]);
            let mut d = match self.deblocks.get(i) {
                Some(dec) => {
                    let (dx, g) = dec.backward(block_out, &tape.ups[i], slice, true)?;
                    deblock_grads[i] = Some(g);
                    dx.ok_or_else(missing_dx)?
                }
                None => slice,
            };
            if let Some(n) = d_next.take() {
                for (a, b) in d.data.iter_mut().zip(&n.data) {
                    *a += b;
                }
            }
            let mut grads = Vec::with_capacity(self.blocks[i].len());
            for (k, unit) in self.blocks[i].iter().enumerate().rev() {
                let (dx, g) = unit.backward(&maps[k], &maps[k + 1], d, true)?;
                grads.push(g);
                d = dx.ok_or_else(missing_dx)?;
            }
            grads.reverse();
            block_grads[i] = grads;
            d_next = Some(d);
        }
        let mut grads: Vec<UnitGrads> = block_grads.into_iter().flatten().collect();
        grads.extend(deblock_grads.into_iter().flatten());
        Ok((d_next.ok_or_else(missing_dx)?, grads))
    }

    /// Blocks' units, then deblocks: the order of [`Self::backward`]'s gradients.
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.blocks.iter().flatten().chain(&self.deblocks)
    }
}

fn missing_dx() -> NnError {
    NnError::Invalid {
        op: "backbone backward",
        msg: "a unit returned no input gradient".into(),
    }
}

/// Feature maps of one backbone forward pass, for [`BevBackbone::backward`].
#[derive(Debug, Default)]
pub struct BackboneTape {
    /// Per block: its input, then each unit's output.
    blocks: Vec<Vec<Tensor>>,
    /// Per block: its deblock's output (or the block output when it has no deblock).
    ups: Vec<Tensor>,
    /// Input of the final deblock (the concatenation), when there is one.
    final_in: Option<Tensor>,
}

impl BackboneTape {
    /// The input map of every unit of `bb`, in [`BevBackbone`] unit order (blocks, then
    /// deblocks). `None` when the tape was not recorded by `bb`.
    pub fn unit_inputs<'a>(&'a self, bb: &BevBackbone) -> Option<Vec<&'a Tensor>> {
        let mut v = Vec::new();
        for (block, maps) in bb.blocks.iter().zip(&self.blocks) {
            // maps: the block's input, then each unit's output.
            v.extend(maps.get(..block.len())?);
        }
        for i in 0..bb.deblocks.len() {
            if i < bb.blocks.len() {
                v.push(self.blocks.get(i)?.last()?);
            } else {
                v.push(self.final_in.as_ref()?);
            }
        }
        Some(v)
    }
}

/// Scatters back: `dL/d(pillar features)` (`P x C`) from `dL/d(BEV map)`.
pub fn scatter_backward(cells: &[(u32, u32)], d_bev: &Tensor) -> Vec<f32> {
    let (c, nx) = (d_bev.shape[0], d_bev.shape[2]);
    let plane = d_bev.shape[1] * nx;
    let mut out = Vec::with_capacity(cells.len() * c);
    for &(y, x) in cells {
        let idx = y as usize * nx + x as usize;
        out.extend((0..c).map(|ch| d_bev.data[ch * plane + idx]));
    }
    out
}

/// Concatenates `[C_i, H, W]` maps on channels.
pub fn concat_channels(maps: Vec<Tensor>) -> Tensor {
    if maps.len() == 1 {
        return maps.into_iter().next().unwrap_or_default();
    }
    let (h, w) = (maps[0].shape[1], maps[0].shape[2]);
    let c: usize = maps.iter().map(|m| m.shape[0]).sum();
    let mut data = Vec::with_capacity(c * h * w);
    for m in &maps {
        assert_eq!(
            (m.shape[1], m.shape[2]),
            (h, w),
            "deblock outputs must share one size"
        );
        data.extend_from_slice(&m.data);
    }
    Tensor::from_vec(&[c, h, w], data)
}
