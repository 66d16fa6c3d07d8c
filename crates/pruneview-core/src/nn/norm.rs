//! Eval-mode batch normalisation, `y = (x - mean) / sqrt(var + eps) * gamma + beta`, and ReLU.
//!
//! At inference BN is an affine map per channel, so it is folded into the preceding layer's
//! weights (`W' = W * scale`, `b' = (b - mean) * scale + beta`, `scale = gamma / sqrt(var +
//! eps)`), which removes a pass over every feature map. The fold is computed in f64.
//! [`batchnorm_inplace`] applies BN as a separate pass, for when the un-folded layer is needed
//! (e.g. pruning masks on the original weights).

use rayon::prelude::*;

use super::kernel::relu1;
use super::{NnError, Tensor, shape_err};

/// Running statistics and affine parameters of one BatchNorm layer (eval mode).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub eps: f32,
}

impl BatchNorm {
    /// Number of channels, after checking that the four vectors agree.
    pub fn channels(&self) -> Result<usize, NnError> {
        let c = self.gamma.len();
        for (what, v) in [
            ("beta", &self.beta),
            ("running_mean", &self.mean),
            ("running_var", &self.var),
        ] {
            if v.len() != c {
                return Err(shape_err(
                    "batchnorm",
                    what,
                    format!("[{c}] like gamma"),
                    &[v.len()],
                ));
            }
        }
        Ok(c)
    }

    /// Per-channel `(scale, shift)` with `y = x * scale + shift`, in f64.
    pub fn affine(&self) -> Result<(Vec<f64>, Vec<f64>), NnError> {
        let c = self.channels()?;
        let mut scale = Vec::with_capacity(c);
        let mut shift = Vec::with_capacity(c);
        for i in 0..c {
            let sc = self.gamma[i] as f64 / (self.var[i] as f64 + self.eps as f64).sqrt();
            scale.push(sc);
            shift.push(self.beta[i] as f64 - self.mean[i] as f64 * sc);
        }
        Ok((scale, shift))
    }
}

/// Folds `bn` into a layer's `weight` and optional `bias`; returns the new `(weight, bias)`.
///
/// `out_channel_axis` is the weight axis that indexes the layer's output channels: 0 for
/// `Conv2d` (`[Cout, Cin, kH, kW]`) and `Linear` (`[out, in]`), **1** for `ConvTranspose2d`
/// (`[Cin, Cout, kH, kW]`).
pub fn fold_batchnorm(
    weight: &Tensor,
    bias: Option<&[f32]>,
    bn: &BatchNorm,
    out_channel_axis: usize,
) -> Result<(Tensor, Vec<f32>), NnError> {
    const OP: &str = "fold_batchnorm";
    let c = bn.channels()?;
    if out_channel_axis >= weight.shape.len() || weight.shape[out_channel_axis] != c {
        return Err(shape_err(
            OP,
            "weight",
            format!("{c} output channels on axis {out_channel_axis}"),
            &weight.shape,
        ));
    }
    if let Some(b) = bias
        && b.len() != c
    {
        return Err(shape_err(OP, "bias", format!("[{c}]"), &[b.len()]));
    }
    let (scale, shift) = bn.affine()?;
    let inner: usize = weight.shape[out_channel_axis + 1..].iter().product();
    let mut w = weight.clone();
    for (i, v) in w.data.iter_mut().enumerate() {
        let ch = (i / inner.max(1)) % c;
        *v = (*v as f64 * scale[ch]) as f32;
    }
    let b = (0..c)
        .map(|i| (bias.map_or(0.0, |b| b[i] as f64) * scale[i] + shift[i]) as f32)
        .collect();
    Ok((w, b))
}

/// Applies eval-mode BN in place over axis `channel_axis` of `x` (0 for `[C, H, W]` maps; the
/// last axis for `[N, C]` or `[P, 32, C]` point features, as BatchNorm1d after a Linear).
pub fn batchnorm_inplace(
    x: &mut Tensor,
    bn: &BatchNorm,
    channel_axis: usize,
) -> Result<(), NnError> {
    let c = bn.channels()?;
    if channel_axis >= x.shape.len() || x.shape[channel_axis] != c {
        return Err(shape_err(
            "batchnorm",
            "input",
            format!("{c} channels on axis {channel_axis}"),
            &x.shape,
        ));
    }
    let (scale, shift) = bn.affine()?;
    let scale: Vec<f32> = scale.iter().map(|&v| v as f32).collect();
    let shift: Vec<f32> = shift.iter().map(|&v| v as f32).collect();
    let inner: usize = x.shape[channel_axis + 1..].iter().product();
    if inner == 0 || x.data.is_empty() {
        return Ok(());
    }
    if inner == 1 {
        // Channels last: each row of c values.
        x.data.par_chunks_mut(c * 1024).for_each(|block| {
            for row in block.chunks_exact_mut(c) {
                for ((v, s), t) in row.iter_mut().zip(&scale).zip(&shift) {
                    *v = *v * s + t;
                }
            }
        });
    } else {
        x.data
            .par_chunks_mut(inner)
            .enumerate()
            .for_each(|(i, plane)| {
                let ch = i % c;
                let (s, t) = (scale[ch], shift[ch]);
                for v in plane {
                    *v = *v * s + t;
                }
            });
    }
    Ok(())
}

/// `x = max(x, 0)` elementwise (NaN stays NaN, as in PyTorch).
pub fn relu_inplace(x: &mut [f32]) {
    x.par_chunks_mut(1 << 16).for_each(|c| {
        for v in c {
            *v = relu1(*v);
        }
    });
}
