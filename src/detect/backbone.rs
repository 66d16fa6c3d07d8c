//! `PointPillarScatter` and OpenPCDet's `BaseBEVBackbone`: strided conv blocks, each
//! upsampled by a deblock, concatenated on channels.

use crate::model::Weights;
use crate::model::config::BackboneConfig;
use crate::nn::{NnError, Tensor};

use super::layers::{Unit, UnitError, UnitKind, UnitSpec};
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
        let mut x = bev;
        let mut ups: Vec<Tensor> = Vec::with_capacity(self.blocks.len());
        for (i, block) in self.blocks.iter().enumerate() {
            for unit in block {
                x = unit.forward_map(&x)?;
            }
            ups.push(match self.deblocks.get(i) {
                Some(d) => d.forward_map(&x)?,
                None => x.clone(),
            });
        }
        let mut out = concat_channels(ups);
        if let Some(last) = self.deblocks.get(self.blocks.len()) {
            out = last.forward_map(&out)?;
        }
        Ok(out)
    }
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
