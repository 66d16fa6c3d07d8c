//! The detector's parameterised units: a conv / transposed conv / linear / sparse 3-D conv,
//! optionally followed by an eval-mode BatchNorm and a ReLU.
//!
//! A unit keeps the weights exactly as the checkpoint stores them (pruning acts on those) and
//! a BatchNorm-folded copy that the forward pass runs.

use crate::model::{Weights, WeightsError};
use crate::nn::sparse::{Rulebook, SparseConv3d, SparseGeometry};
use crate::nn::{self, Conv2dParams, NnError, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitKind {
    /// `Conv2d`, weight `[Cout, Cin, k, k]`, zero padding on all sides.
    Conv { stride: usize, padding: usize },
    /// `ConvTranspose2d`, weight `[Cin, Cout, k, k]`, padding 0.
    ConvTranspose { stride: usize },
    /// `Linear`, weight `[out, in]`, applied to rows.
    Linear,
    /// spconv's `SubMConv3d` / `SparseConv3d`, weight `[Cout, kz, ky, kx, Cin]` (spconv 2.3's
    /// layout), applied to the features of active sites through a rulebook.
    SparseConv(SparseRule),
}

/// How a sparse conv finds its output sites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SparseRule {
    /// `SubMConv3d` (3x3x3): the input sites.
    Submanifold,
    /// `SparseConv3d` with this kernel, stride and padding.
    Strided(SparseGeometry),
}

/// An eval-mode BatchNorm and its state-dict prefix (e.g. `backbone_2d.blocks.0.2`).
#[derive(Clone, Debug)]
pub struct NamedBatchNorm {
    pub prefix: String,
    pub bn: nn::BatchNorm,
}

impl NamedBatchNorm {
    pub fn load(
        w: &Weights,
        prefix: &str,
        channels: usize,
        eps: f32,
    ) -> Result<Self, WeightsError> {
        let get = |k: &str| {
            w.tensor(&format!("{prefix}.{k}"), &[channels])
                .map(|t| t.data)
        };
        let var = get("running_var")?;
        // A variance below zero is no trained state: folding it would give NaN everywhere.
        if let Some((i, v)) = var.iter().enumerate().find(|(_, v)| **v < 0.0) {
            return Err(WeightsError::Invalid {
                path: w.path().to_path_buf(),
                key: format!("{prefix}.running_var"),
                problem: format!("channel {i} has a negative variance ({v}); a variance is >= 0"),
            });
        }
        Ok(NamedBatchNorm {
            prefix: prefix.to_string(),
            bn: nn::BatchNorm {
                gamma: get("weight")?,
                beta: get("bias")?,
                mean: get("running_mean")?,
                var,
                eps,
            },
        })
    }
}

/// One parameterised unit of the network.
#[derive(Clone, Debug)]
pub struct Unit {
    /// State-dict prefix of the weight, e.g. `backbone_2d.blocks.0.1` (weight at `.weight`).
    pub prefix: String,
    pub kind: UnitKind,
    /// The checkpoint's weight (unfolded).
    pub weight: Tensor,
    pub bias: Option<Vec<f32>>,
    pub bn: Option<NamedBatchNorm>,
    pub relu: bool,
    /// The BN-folded layer the forward pass runs (prepacked by `nn`).
    op: FoldedOp,
    /// The folded layer's VJP operator, built on the first backward pass and reused by every
    /// later probe (rebuilt whenever the weight changes, since `Unit::new` starts empty).
    vjp: std::sync::OnceLock<Result<Backward, String>>,
}

/// What [`Unit::backward`] reuses across calls: the folded weight and its VJP operator.
#[derive(Clone, Debug)]
struct Backward {
    folded: Tensor,
    conv: Option<nn::vjp::ConvVjp>,
    /// The folded sparse conv (its bias does not enter a VJP).
    sparse: Option<SparseConv3d>,
}

/// A unit's BN-folded kernel, ready to run.
#[derive(Clone, Debug)]
enum FoldedOp {
    Conv(nn::Conv2d),
    ConvTranspose(nn::ConvTranspose2d),
    Linear {
        weight: Tensor,
        bias: Option<Vec<f32>>,
    },
    Sparse(SparseConv3d),
}

/// What a unit's weight must look like, for loading.
pub struct UnitSpec<'a> {
    pub prefix: &'a str,
    pub kind: UnitKind,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub bias: bool,
    /// BatchNorm prefix and eps.
    pub bn: Option<(&'a str, f32)>,
    pub relu: bool,
}

impl Unit {
    pub fn load(w: &Weights, spec: UnitSpec) -> Result<Self, UnitError> {
        let shape: Vec<usize> = match spec.kind {
            UnitKind::Conv { .. } => vec![
                spec.out_channels,
                spec.in_channels,
                spec.kernel,
                spec.kernel,
            ],
            UnitKind::ConvTranspose { .. } => vec![
                spec.in_channels,
                spec.out_channels,
                spec.kernel,
                spec.kernel,
            ],
            UnitKind::Linear => vec![spec.out_channels, spec.in_channels],
            UnitKind::SparseConv(_) => {
                return Err(UnitError::Nn(NnError::Invalid {
                    op: "unit load",
                    msg: format!(
                        "{}: sparse convs load through the 3-D backbone",
                        spec.prefix
                    ),
                }));
            }
        };
        let weight = w.tensor(&format!("{}.weight", spec.prefix), &shape)?;
        let bias = if spec.bias {
            Some(
                w.tensor(&format!("{}.bias", spec.prefix), &[spec.out_channels])?
                    .data,
            )
        } else {
            None
        };
        let bn = match spec.bn {
            Some((prefix, eps)) => Some(NamedBatchNorm::load(w, prefix, spec.out_channels, eps)?),
            None => None,
        };
        Ok(Unit::new(
            spec.prefix.to_string(),
            spec.kind,
            weight,
            bias,
            bn,
            spec.relu,
        )?)
    }

    pub fn new(
        prefix: String,
        kind: UnitKind,
        weight: Tensor,
        bias: Option<Vec<f32>>,
        bn: Option<NamedBatchNorm>,
        relu: bool,
    ) -> Result<Self, NnError> {
        let op = fold(kind, &weight, bias.as_deref(), bn.as_ref(), relu)?;
        Ok(Unit {
            prefix,
            kind,
            weight,
            bias,
            bn,
            relu,
            op,
            vjp: Default::default(),
        })
    }

    /// The weight's state-dict name.
    pub fn weight_name(&self) -> String {
        format!("{}.weight", self.prefix)
    }

    pub fn out_channels(&self) -> usize {
        match self.kind {
            UnitKind::ConvTranspose { .. } => self.weight.shape[1],
            _ => self.weight.shape[0],
        }
    }

    pub fn in_channels(&self) -> usize {
        match self.kind {
            UnitKind::ConvTranspose { .. } => self.weight.shape[0],
            UnitKind::SparseConv(_) => self.weight.shape[4],
            _ => self.weight.shape[1],
        }
    }

    /// Replaces the checkpoint weight (e.g. with a pruned copy) and refolds.
    pub fn set_weight(&mut self, weight: Tensor) -> Result<(), NnError> {
        if weight.shape != self.weight.shape {
            return Err(nn::NnError::Invalid {
                op: "set_weight",
                msg: format!(
                    "{}: new weight has shape {:?}, expected {:?}",
                    self.weight_name(),
                    weight.shape,
                    self.weight.shape
                ),
            });
        }
        self.op = fold(
            self.kind,
            &weight,
            self.bias.as_deref(),
            self.bn.as_ref(),
            self.relu,
        )?;
        self.weight = weight;
        self.vjp = Default::default();
        Ok(())
    }

    /// Runs the unit (conv + folded BN + ReLU) on a `[C, H, W]` map.
    pub fn forward_map(&self, x: &Tensor) -> Result<Tensor, NnError> {
        match &self.op {
            FoldedOp::Conv(c) => c.forward(x),
            FoldedOp::ConvTranspose(c) => c.forward(x),
            FoldedOp::Linear { .. } | FoldedOp::Sparse(_) => Err(NnError::Invalid {
                op: "forward_map",
                msg: format!("{} does not run on a dense map", self.weight_name()),
            }),
        }
    }

    /// Runs a sparse unit on `n_in x Cin` site features through `rb`: `n_out x Cout`.
    pub fn forward_sparse(&self, x: &[f32], rb: &Rulebook) -> Result<Vec<f32>, NnError> {
        let FoldedOp::Sparse(conv) = &self.op else {
            return Err(NnError::Invalid {
                op: "forward_sparse",
                msg: format!("{} is not a sparse conv", self.weight_name()),
            });
        };
        let mut y = conv.forward(x, rb)?;
        if self.relu {
            nn::relu_inplace(&mut y);
        }
        Ok(y)
    }

    /// Runs a linear unit on `rows x in` features: returns `rows x out`.
    pub fn forward_rows(&self, x: Vec<f32>, rows: usize) -> Result<Vec<f32>, NnError> {
        let FoldedOp::Linear { weight, bias } = &self.op else {
            return Err(NnError::Invalid {
                op: "forward_rows",
                msg: format!("{} is not a linear layer", self.weight_name()),
            });
        };
        let cols = x.len().checked_div(rows).unwrap_or(weight.shape[1]);
        let mut y = nn::linear(&Tensor::from_vec(&[rows, cols], x), weight, bias.as_deref())?;
        if self.relu {
            nn::relu_inplace(&mut y.data);
        }
        Ok(y.data)
    }
}

/// What recovery (re-fitting a pruned network) needs of a unit.
impl Unit {
    /// The unit's conv / linear alone (its bias kept, no BatchNorm, no ReLU): the
    /// pre-normalisation output whose statistics a BatchNorm tracks.
    pub fn linear_part(&self) -> Result<Unit, NnError> {
        Unit::new(
            self.prefix.clone(),
            self.kind,
            self.weight.clone(),
            self.bias.clone(),
            None,
            false,
        )
    }

    /// Runs the unit on its input as [`crate::detect::TapedForward::unit_inputs`] gives it:
    /// `rows x in` for a linear unit, a `[C, H, W]` map otherwise.
    pub fn forward_input(&self, x: &Tensor) -> Result<Tensor, NnError> {
        match self.kind {
            UnitKind::Linear => {
                let rows = x.shape.first().copied().unwrap_or(0);
                let out = self.forward_rows(x.data.clone(), rows)?;
                let c = self.out_channels();
                Ok(Tensor::from_vec(&[rows, c], out))
            }
            _ => self.forward_map(x),
        }
    }

    /// Replaces the weight, the bias and the BatchNorm's parameters and statistics at once
    /// (shapes unchanged) and refolds.
    pub fn set_params(
        &mut self,
        weight: Tensor,
        bias: Option<Vec<f32>>,
        bn: Option<nn::BatchNorm>,
    ) -> Result<(), NnError> {
        let c = self.out_channels();
        let bad = |what: &str| NnError::Invalid {
            op: "set_params",
            msg: format!("{}: {what} does not match the unit", self.weight_name()),
        };
        if weight.shape != self.weight.shape {
            return Err(bad("the weight's shape"));
        }
        if bias.as_ref().map(Vec::len) != self.bias.as_ref().map(|_| c) {
            return Err(bad("the bias"));
        }
        let named = match (&self.bn, bn) {
            (None, None) => None,
            (Some(old), Some(bn)) => {
                if bn.channels()? != c {
                    return Err(bad("the BatchNorm"));
                }
                Some(NamedBatchNorm {
                    prefix: old.prefix.clone(),
                    bn,
                })
            }
            _ => return Err(bad("the BatchNorm")),
        };
        self.op = fold(
            self.kind,
            &weight,
            bias.as_deref(),
            named.as_ref(),
            self.relu,
        )?;
        self.weight = weight;
        self.bias = bias;
        self.bn = named;
        self.vjp = Default::default();
        Ok(())
    }
}

/// Gradients of a loss with respect to one unit's parameters, in checkpoint (unfolded) form.
#[derive(Clone, Debug)]
pub struct UnitGrads {
    /// `dL/dW`, shaped like [`Unit::weight`].
    pub weight: Tensor,
    /// `dL/db` when the unit has a bias.
    pub bias: Option<Vec<f32>>,
    /// `dL/dgamma` and `dL/dbeta` of the BatchNorm.
    pub bn: Option<(Vec<f32>, Vec<f32>)>,
}

impl UnitGrads {
    /// All-zero gradients for `unit` (a branch the loss does not reach).
    pub fn zeros(unit: &Unit) -> Self {
        let c = unit.out_channels();
        UnitGrads {
            weight: Tensor::zeros(&unit.weight.shape),
            bias: unit.bias.as_ref().map(|_| vec![0.0; c]),
            bn: unit.bn.as_ref().map(|_| (vec![0.0; c], vec![0.0; c])),
        }
    }

    /// The gradients under their state-dict names (`{prefix}.weight`, `{bn}.weight`, ...).
    pub fn named(&self, unit: &Unit) -> Vec<(String, Tensor)> {
        let mut out = vec![(unit.weight_name(), self.weight.clone())];
        if let Some(b) = &self.bias {
            out.push((
                format!("{}.bias", unit.prefix),
                Tensor::from_vec(&[b.len()], b.clone()),
            ));
        }
        if let (Some((g, b)), Some(bn)) = (&self.bn, &unit.bn) {
            out.push((
                format!("{}.weight", bn.prefix),
                Tensor::from_vec(&[g.len()], g.clone()),
            ));
            out.push((
                format!("{}.bias", bn.prefix),
                Tensor::from_vec(&[b.len()], b.clone()),
            ));
        }
        out
    }
}

impl Unit {
    /// The BN-folded weight and bias the forward pass runs.
    fn folded(&self) -> Result<(Tensor, Option<Vec<f32>>), NnError> {
        Ok(match &self.bn {
            None => (self.weight.clone(), self.bias.clone()),
            Some(bn) => {
                let (w, b) = nn::fold_batchnorm(
                    &self.weight,
                    self.bias.as_deref(),
                    &bn.bn,
                    self.out_axis(),
                )?;
                (w, Some(b))
            }
        })
    }

    fn prepare_backward(&self) -> Result<Backward, NnError> {
        let (folded, _) = self.folded()?;
        let conv = match self.kind {
            UnitKind::Conv { stride, padding } => Some(nn::vjp::ConvVjp::conv(
                &folded,
                Conv2dParams::new(stride, padding),
            )?),
            UnitKind::ConvTranspose { stride } => Some(nn::vjp::ConvVjp::conv_transpose(
                &folded,
                Conv2dParams::new(stride, 0),
            )?),
            UnitKind::Linear => None,
            UnitKind::SparseConv(_) => None,
        };
        let sparse = match self.kind {
            UnitKind::SparseConv(_) => Some(SparseConv3d::new(&folded, None)?),
            _ => None,
        };
        Ok(Backward {
            folded,
            conv,
            sparse,
        })
    }

    /// The weight axis that indexes output channels (1 for transposed convs).
    fn out_axis(&self) -> usize {
        usize::from(matches!(self.kind, UnitKind::ConvTranspose { .. }))
    }

    /// Vector-Jacobian product of the unit in eval mode: from its input `x` (a `[C, H, W]`
    /// map, or `rows x in` for a linear unit), its output `y` (after the ReLU) and `dy =
    /// dL/dy`, returns `dL/dx` (when `need_dx`) and the parameter gradients.
    ///
    /// The forward pass runs the BN-folded layer `W' = W * scale`, `b' = (b - mean) * scale +
    /// beta` with `scale = gamma / sqrt(var + eps)`, so with `G = dL/dW'` and `g = dL/db'`:
    /// `dL/dW = G * scale`, `dL/db = g * scale`, `dL/dbeta = g` and `dL/dgamma = (sum(W * G) +
    /// (b - mean) * g) / sqrt(var + eps)` per channel. No extra pass over the maps is needed.
    pub fn backward(
        &self,
        x: &Tensor,
        y: &Tensor,
        mut dy: Tensor,
        need_dx: bool,
    ) -> Result<(Option<Tensor>, UnitGrads), NnError> {
        if self.relu {
            nn::vjp::relu_vjp_inplace(&mut dy.data, &y.data);
        }
        let prepared = self.prepared_backward()?;
        let g = match (&prepared.conv, self.kind) {
            (Some(conv), _) => conv.apply(x, &dy, need_dx)?,
            (None, UnitKind::Linear) => nn::vjp::linear_vjp(x, &prepared.folded, &dy, need_dx)?,
            (None, _) => {
                return Err(NnError::Invalid {
                    op: "unit backward",
                    msg: format!(
                        "{} runs through a rulebook: use backward_sparse",
                        self.weight_name()
                    ),
                });
            }
        };
        Ok((g.dx, self.unfold_grads(g.dw, g.db)?))
    }

    /// [`Unit::backward`] of a sparse unit: `x` its `n_in x Cin` input features, `y` its
    /// `n_out x Cout` output (after the ReLU), `dy = dL/dy`, `rb` the rulebook it ran with.
    pub fn backward_sparse(
        &self,
        x: &[f32],
        y: &[f32],
        mut dy: Vec<f32>,
        rb: &Rulebook,
        need_dx: bool,
    ) -> Result<(Option<Vec<f32>>, UnitGrads), NnError> {
        if self.relu {
            nn::vjp::relu_vjp_inplace(&mut dy, y);
        }
        let prepared = self.prepared_backward()?;
        let conv = prepared.sparse.as_ref().ok_or_else(|| NnError::Invalid {
            op: "unit backward",
            msg: format!("{} is not a sparse conv", self.weight_name()),
        })?;
        let g = conv.backward(x, rb, &dy, need_dx)?;
        Ok((g.dx, self.unfold_grads(g.dw, g.db)?))
    }

    /// The folded layer's VJP operator, built on first use.
    fn prepared_backward(&self) -> Result<&Backward, NnError> {
        self.vjp
            .get_or_init(|| self.prepare_backward().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|msg| NnError::Invalid {
                op: "unit backward",
                msg: format!("{}: {msg}", self.weight_name()),
            })
    }

    /// Gradients of the checkpoint's parameters from those of the folded layer, `dw` =
    /// dL/dW' and `db` = dL/db' (see [`Unit::backward`]).
    fn unfold_grads(&self, folded_dw: Tensor, db: Vec<f32>) -> Result<UnitGrads, NnError> {
        let Some(bn) = &self.bn else {
            let bias = self.bias.as_ref().map(|_| db.clone());
            return Ok(UnitGrads {
                weight: folded_dw,
                bias,
                bn: None,
            });
        };
        let bn = &bn.bn;
        let c = bn.channels()?;
        let inv_std: Vec<f64> = (0..c)
            .map(|i| 1.0 / (bn.var[i] as f64 + bn.eps as f64).sqrt())
            .collect();
        let scale: Vec<f64> = (0..c).map(|i| bn.gamma[i] as f64 * inv_std[i]).collect();
        // Flat weight index -> output channel.
        let shape = &self.weight.shape;
        let inner: usize = shape[self.out_axis() + 1..].iter().product();
        let channel_of = |i: usize| (i / inner) % c;
        let mut dw = folded_dw;
        let mut wg = vec![0f64; c];
        for (i, (d, w)) in dw.data.iter_mut().zip(&self.weight.data).enumerate() {
            let ch = channel_of(i);
            wg[ch] += *w as f64 * *d as f64;
            *d = (*d as f64 * scale[ch]) as f32;
        }
        let b0 = |i: usize| self.bias.as_ref().map_or(0.0, |b| b[i] as f64);
        let dgamma = (0..c)
            .map(|i| ((wg[i] + (b0(i) - bn.mean[i] as f64) * db[i] as f64) * inv_std[i]) as f32)
            .collect();
        let bias = self
            .bias
            .as_ref()
            .map(|_| (0..c).map(|i| (db[i] as f64 * scale[i]) as f32).collect());
        Ok(UnitGrads {
            weight: dw,
            bias,
            bn: Some((dgamma, db)),
        })
    }
}

/// Folds an eval-mode BatchNorm into the weight and bias and builds the kernel.
fn fold(
    kind: UnitKind,
    weight: &Tensor,
    bias: Option<&[f32]>,
    bn: Option<&NamedBatchNorm>,
    relu: bool,
) -> Result<FoldedOp, NnError> {
    let (w, b) = match bn {
        None => (weight.clone(), bias.map(<[f32]>::to_vec)),
        Some(bn) => {
            let out_axis = usize::from(matches!(kind, UnitKind::ConvTranspose { .. }));
            let (w, b) = nn::fold_batchnorm(weight, bias, &bn.bn, out_axis)?;
            (w, Some(b))
        }
    };
    Ok(match kind {
        UnitKind::Conv { stride, padding } => FoldedOp::Conv(nn::Conv2d::new(
            &w,
            b.as_deref(),
            Conv2dParams::new(stride, padding).with_relu(relu),
        )?),
        UnitKind::ConvTranspose { stride } => FoldedOp::ConvTranspose(nn::ConvTranspose2d::new(
            &w,
            b.as_deref(),
            Conv2dParams::new(stride, 0).with_relu(relu),
        )?),
        UnitKind::Linear => FoldedOp::Linear { weight: w, bias: b },
        UnitKind::SparseConv(_) => FoldedOp::Sparse(SparseConv3d::new(&w, b.as_deref())?),
    })
}

/// Why a unit could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Nn(#[from] NnError),
}
