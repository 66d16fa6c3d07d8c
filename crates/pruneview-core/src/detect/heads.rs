//! Dense heads: OpenPCDet's `AnchorHeadSingle` and `CenterHead`, their raw outputs (named and
//! laid out as OpenPCDet stores them) and their decoding into boxes.

use crate::model::Weights;
use crate::model::config::{AnchorHeadConfig, CenterHeadConfig, DataConfig, PostProcessing};
use crate::nn::{self, NnError, Tensor};

use super::anchors::{self, Anchors};
use super::box_coder;
use super::layers::{Unit, UnitError, UnitGrads, UnitKind, UnitSpec};
use super::nms;
use super::torch_order;

/// Raw dense-head outputs, pre-decoding, with OpenPCDet's names (`cls_preds`,
/// `head0.hm`, ...) and shapes (NHWC for anchor heads, NCHW for CenterPoint; batch 1), each
/// saying what it holds ([`OutputKind`]). Gradients and probes with respect to the outputs
/// use the same type, with the kinds of the outputs they belong to.
#[derive(Clone, Debug, Default)]
pub struct RawOutputs {
    pub outputs: Vec<RawOutput>,
}

impl RawOutputs {
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.outputs
            .iter()
            .find(|o| o.name == name)
            .map(|o| &o.tensor)
    }
}

/// One named head output and what it holds.
#[derive(Clone, Debug)]
pub struct RawOutput {
    pub name: String,
    pub kind: OutputKind,
    pub tensor: Tensor,
}

impl RawOutput {
    /// Another tensor of this output's name and kind (a gradient or probe of it).
    pub fn like(&self, tensor: Tensor) -> RawOutput {
        RawOutput {
            name: self.name.clone(),
            kind: self.kind,
            tensor,
        }
    }
}

/// What a raw output holds, so that its consumers (the pruning distortion) need not know
/// head types or tensor names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputKind {
    pub role: OutputRole,
    pub layout: OutputLayout,
    /// Which head of the detector produced it (CenterPoint has one per class group): a
    /// locality output is scored by the confidence output of its own head.
    pub head: usize,
}

/// Whether an output says how likely an object is, or where and what shape it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputRole {
    /// Class logits (`cls_preds`, `hm`).
    Confidence,
    /// Box codes, direction logits, CenterPoint's regression maps.
    Locality,
}

/// How an output's elements map onto the BEV grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputLayout {
    /// `[1, H, W, anchors * k]` (an anchor head's NHWC): per cell, `anchors` anchors of `k`
    /// consecutive values each.
    Anchors { anchors: usize },
    /// `[1, C, H, W]` (a centre head's NCHW): one BEV plane per channel.
    Planes,
}

/// One detected box in the LiDAR frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// `[x, y, z, dx, dy, dz, heading]`, z at the gravity centre.
    pub bbox: [f32; 7],
    /// `[vx, vy]` for heads that predict velocity.
    pub velocity: Option<[f32; 2]>,
    pub score: f32,
    /// 1-based class label (index into CLASS_NAMES + 1), as OpenPCDet reports it.
    pub label: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error(transparent)]
    Unit(#[from] UnitError),
    #[error("anchor config: {0}")]
    Anchors(#[from] anchors::AnchorError),
    #[error("{0}")]
    Config(String),
}

#[derive(Clone, Debug)]
// One head per detector: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum DenseHead {
    Anchor(AnchorHead),
    Center(CenterHead),
}

impl DenseHead {
    pub fn units(&self) -> Vec<&Unit> {
        match self {
            DenseHead::Anchor(h) => {
                let mut v = vec![&h.conv_cls, &h.conv_box];
                v.extend(h.conv_dir.as_ref());
                v
            }
            DenseHead::Center(h) => {
                let mut v = vec![&h.shared];
                for head in &h.heads {
                    for (_, branch) in head {
                        v.extend(branch.iter());
                    }
                }
                v
            }
        }
    }

    pub fn units_mut(&mut self) -> Vec<&mut Unit> {
        match self {
            DenseHead::Anchor(h) => {
                let mut v = vec![&mut h.conv_cls, &mut h.conv_box];
                v.extend(h.conv_dir.as_mut());
                v
            }
            DenseHead::Center(h) => {
                let mut v = vec![&mut h.shared];
                for head in &mut h.heads {
                    for (_, branch) in head {
                        v.extend(branch.iter_mut());
                    }
                }
                v
            }
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<RawOutputs, NnError> {
        match self {
            DenseHead::Anchor(h) => h.forward(x),
            DenseHead::Center(h) => h.forward(x),
        }
    }

    /// [`Self::forward`], keeping the intermediate maps the backward pass needs.
    pub fn forward_taped(&self, x: &Tensor, tape: &mut HeadTape) -> Result<RawOutputs, NnError> {
        match self {
            DenseHead::Anchor(h) => h.forward(x),
            DenseHead::Center(h) => h.forward_taped(x, Some(tape)),
        }
    }

    /// VJP of the head: from its input `x`, the tape and `dL/d(raw outputs)` (any output
    /// left out counts as zero), returns `dL/dx` and the gradients of [`Self::units`].
    pub fn backward(
        &self,
        x: &Tensor,
        tape: &HeadTape,
        d_raw: &RawOutputs,
    ) -> Result<(Tensor, Vec<UnitGrads>), NnError> {
        match self {
            DenseHead::Anchor(h) => h.backward(x, d_raw),
            DenseHead::Center(h) => h.backward(x, tape, d_raw),
        }
    }

    /// The kind of this head's raw output `name` (`None` for a name it does not produce).
    pub fn output_kind(&self, name: &str) -> Option<OutputKind> {
        match self {
            DenseHead::Anchor(h) => h
                .convs()
                .iter()
                .any(|(n, _)| *n == name)
                .then(|| h.output_kind(name)),
            DenseHead::Center(h) => {
                let (head, branch) = name.strip_prefix("head")?.split_once('.')?;
                let head: usize = head.parse().ok()?;
                let branches = h.heads.get(head)?;
                branches
                    .iter()
                    .any(|(b, _)| b == branch)
                    .then(|| CenterHead::output_kind(head, branch))
            }
        }
    }

    pub fn decode(&self, raw: &RawOutputs) -> Vec<Detection> {
        match self {
            DenseHead::Anchor(h) => h.decode(raw),
            DenseHead::Center(h) => h.decode(raw),
        }
    }
}

/// Intermediate maps of a head's forward pass, for [`DenseHead::backward`] (the anchor head
/// needs none: its convs read the backbone output directly).
#[derive(Debug, Default)]
pub struct HeadTape {
    shared: Option<Tensor>,
    /// Per CenterPoint branch (heads in order, branches in order): each unit's output.
    branches: Vec<Vec<Tensor>>,
}

impl HeadTape {
    /// The input map of every unit of `head` ([`DenseHead::units`] order), whose input is
    /// `x`. `None` when the tape was not recorded by `head`.
    pub fn unit_inputs<'a>(&'a self, head: &DenseHead, x: &'a Tensor) -> Option<Vec<&'a Tensor>> {
        match head {
            DenseHead::Anchor(_) => Some(vec![x; head.units().len()]),
            DenseHead::Center(h) => {
                let shared = self.shared.as_ref()?;
                let mut v = vec![x];
                let branches = h.heads.iter().flat_map(|b| b.iter().map(|(_, u)| u));
                for (units, maps) in branches.zip(&self.branches) {
                    v.push(shared);
                    // maps: each unit's output; unit k reads unit k - 1's.
                    v.extend(maps.get(..units.len().saturating_sub(1))?);
                }
                Some(v)
            }
        }
    }
}

// ----------------------------------------------------------------------------------------
// Anchor head

#[derive(Clone, Debug)]
pub struct AnchorHead {
    pub conv_cls: Unit,
    pub conv_box: Unit,
    pub conv_dir: Option<Unit>,
    pub anchors: Anchors,
    pub num_class: usize,
    coder: box_coder::ResidualCoder,
    cfg: AnchorHeadConfig,
}

const CODE_SIZE: usize = 7;

fn conv1x1(w: &Weights, prefix: &str, cin: usize, cout: usize) -> Result<Unit, UnitError> {
    Unit::load(
        w,
        UnitSpec {
            prefix,
            kind: UnitKind::Conv {
                stride: 1,
                padding: 0,
            },
            in_channels: cin,
            out_channels: cout,
            kernel: 1,
            bias: true,
            bn: None,
            relu: false,
        },
    )
}

/// `[C, H, W]` -> `[1, H, W, C]` (OpenPCDet permutes head outputs to NHWC).
fn to_nhwc(x: &[f32], c: usize, h: usize, w: usize) -> Tensor {
    let plane = h * w;
    let mut out = vec![0f32; x.len()];
    for ch in 0..c {
        let src = &x[ch * plane..(ch + 1) * plane];
        for (p, v) in src.iter().enumerate() {
            out[p * c + ch] = *v;
        }
    }
    Tensor::from_vec(&[1, h, w, c], out)
}

fn with_batch(mut x: Tensor) -> Tensor {
    x.shape.insert(0, 1);
    x
}

use torch_order::sigmoid;

impl AnchorHead {
    pub fn load(
        w: &Weights,
        cfg: &AnchorHeadConfig,
        data: &DataConfig,
        num_classes: usize,
        in_channels: usize,
    ) -> Result<Self, HeadError> {
        let anchors = anchors::generate(&cfg.anchors, &data.point_cloud_range, data.grid_size)?;
        let a = anchors.per_location;
        let num_class = if cfg.class_agnostic { 1 } else { num_classes };
        let conv_cls = conv1x1(w, "dense_head.conv_cls", in_channels, a * num_class)?;
        let conv_box = conv1x1(w, "dense_head.conv_box", in_channels, a * CODE_SIZE)?;
        let conv_dir = if cfg.use_direction_classifier {
            Some(conv1x1(
                w,
                "dense_head.conv_dir_cls",
                in_channels,
                a * cfg.num_dir_bins,
            )?)
        } else {
            None
        };
        Ok(AnchorHead {
            conv_cls,
            conv_box,
            conv_dir,
            anchors,
            num_class,
            coder: box_coder::ResidualCoder::new(CODE_SIZE, false)
                .map_err(|e| HeadError::Config(e.to_string()))?,
            cfg: cfg.clone(),
        })
    }

    /// The three 1x1 convs run as one GEMM (their weights stacked), then split and permuted
    /// to NHWC as OpenPCDet stores them. The detector checks at load time that the feature
    /// map matches the anchors.
    fn convs(&self) -> Vec<(&'static str, &Unit)> {
        let mut convs = vec![("cls_preds", &self.conv_cls), ("box_preds", &self.conv_box)];
        if let Some(d) = &self.conv_dir {
            convs.push(("dir_cls_preds", d));
        }
        convs
    }

    /// `cls_preds` scores; `box_preds` and `dir_cls_preds` place boxes. All NHWC, per anchor.
    fn output_kind(&self, name: &str) -> OutputKind {
        OutputKind {
            role: if name == "cls_preds" {
                OutputRole::Confidence
            } else {
                OutputRole::Locality
            },
            layout: OutputLayout::Anchors {
                anchors: self.anchors.per_location,
            },
            head: 0,
        }
    }

    /// The three 1x1 convs' weights stacked on output channels, and their biases.
    fn fused_weights(&self) -> (Tensor, Vec<f32>) {
        let cin = self.conv_cls.weight.shape[1];
        let mut weight = Vec::new();
        let mut bias = Vec::new();
        for (_, u) in self.convs() {
            weight.extend_from_slice(&u.weight.data);
            bias.extend(u.bias.iter().flatten());
        }
        (Tensor::from_vec(&[bias.len(), cin, 1, 1], weight), bias)
    }

    fn forward(&self, x: &Tensor) -> Result<RawOutputs, NnError> {
        let convs = self.convs();
        let (weight, bias) = self.fused_weights();
        let fused = nn::Conv2d::new(&weight, Some(&bias), nn::Conv2dParams::new(1, 0))?;
        let y = fused.forward(x)?;
        let plane = y.shape[1] * y.shape[2];
        let mut start = 0;
        let mut outputs = Vec::with_capacity(convs.len());
        for (name, u) in convs {
            let c = u.out_channels();
            let part = &y.data[start * plane..(start + c) * plane];
            outputs.push(RawOutput {
                name: name.to_string(),
                kind: self.output_kind(name),
                tensor: to_nhwc(part, c, y.shape[1], y.shape[2]),
            });
            start += c;
        }
        Ok(RawOutputs { outputs })
    }

    /// VJP of the fused 1x1 convs (no BN, no ReLU): one GEMM pair for all three.
    fn backward(
        &self,
        x: &Tensor,
        d_raw: &RawOutputs,
    ) -> Result<(Tensor, Vec<UnitGrads>), NnError> {
        let (weight, _) = self.fused_weights();
        let (h, w) = (x.shape[1], x.shape[2]);
        let plane = h * w;
        let mut dy = vec![0f32; weight.shape[0] * plane];
        let mut start = 0;
        for (name, u) in self.convs() {
            let c = u.out_channels();
            if let Some(d) = d_raw.get(name) {
                if d.data.len() != c * plane {
                    return Err(nn::NnError::Invalid {
                        op: "anchor head backward",
                        msg: format!(
                            "gradient of {name} has shape {:?}, expected [1, {h}, {w}, {c}]",
                            d.shape
                        ),
                    });
                }
                // NHWC -> CHW.
                for (p, row) in d.data.chunks_exact(c).enumerate() {
                    for (ch, v) in row.iter().enumerate() {
                        dy[(start + ch) * plane + p] = *v;
                    }
                }
            }
            start += c;
        }
        let dy = Tensor::from_vec(&[weight.shape[0], h, w], dy);
        let g = nn::vjp::conv2d_vjp(x, &weight, nn::Conv2dParams::new(1, 0), &dy, true)?;
        let cin = weight.shape[1];
        let mut grads = Vec::new();
        let mut start = 0;
        for (_, u) in self.convs() {
            let c = u.out_channels();
            grads.push(UnitGrads {
                weight: Tensor::from_vec(
                    &u.weight.shape,
                    g.dw.data[start * cin..(start + c) * cin].to_vec(),
                ),
                bias: Some(g.db[start..start + c].to_vec()),
                bn: None,
            });
            start += c;
        }
        let dx = g.dx.ok_or_else(|| nn::NnError::Invalid {
            op: "anchor head backward",
            msg: "no input gradient".into(),
        })?;
        Ok((dx, grads))
    }

    /// Decoding and post-processing as `generate_predicted_boxes` + `post_processing`
    /// (class-agnostic NMS on the max class score).
    fn decode(&self, raw: &RawOutputs) -> Vec<Detection> {
        let (Some(cls), Some(boxes)) = (raw.get("cls_preds"), raw.get("box_preds")) else {
            return Vec::new();
        };
        let k = self.num_class;
        let post = &self.cfg.post;
        // `torch.max(sigmoid(cls), -1)`: the sigmoid is monotonic, so only the largest logit
        // needs it, except that an earlier class wins a tie of equal sigmoid values.
        let mut cand = Vec::new();
        let mut cand_scores = Vec::new();
        let mut cand_labels = Vec::new();
        for (a, logits) in cls.data.chunks_exact(k).enumerate() {
            let mut top = 0;
            for (c, &l) in logits.iter().enumerate() {
                if l > logits[top] {
                    top = c;
                }
            }
            let best = sigmoid(logits[top]);
            if best >= post.score_thresh {
                let label = (0..top)
                    .find(|&c| sigmoid(logits[c]) == best)
                    .unwrap_or(top);
                cand.push(a);
                cand_scores.push(best);
                cand_labels.push(label + 1);
            }
        }
        let dir = raw.get("dir_cls_preds");
        let bins = self.cfg.num_dir_bins;
        let classifier = box_coder::DirClassifier {
            offset: self.cfg.dir_offset,
            limit_offset: self.cfg.dir_limit_offset,
            num_bins: bins,
        };
        // Only the candidates that enter NMS need decoding.
        let order = nms_order(&cand_scores, post);
        let mut decoded = vec![0f32; order.len() * CODE_SIZE];
        for (&i, b) in order.iter().zip(decoded.chunks_mut(CODE_SIZE)) {
            let a = cand[i];
            self.coder.decode_one(
                &boxes.data[a * CODE_SIZE..(a + 1) * CODE_SIZE],
                &self.anchors.boxes[a],
                b,
            );
            if let Some(dir) = dir {
                b[6] = classifier.apply(b[6], &dir.data[a * bins..(a + 1) * bins]);
            }
        }
        nms_in_order(&decoded, CODE_SIZE, post)
            .into_iter()
            .map(|pos| {
                let i = order[pos];
                let mut bbox = [0f32; 7];
                bbox.copy_from_slice(&decoded[pos * 7..pos * 7 + 7]);
                Detection {
                    bbox,
                    velocity: None,
                    score: cand_scores[i],
                    label: cand_labels[i],
                }
            })
            .collect()
    }
}

/// The candidates of OpenPCDet's `class_agnostic_nms`, in the order `nms_gpu` visits them:
/// the top `NMS_PRE_MAXSIZE` by `torch.topk`, then ordered by `torch.sort`. PyTorch's tie
/// order is reproduced (see [`torch_order`]) so that equal scores keep the same boxes as
/// OpenPCDet.
fn nms_order(scores: &[f32], post: &PostProcessing) -> Vec<usize> {
    let top = torch_order::topk(scores, post.nms.pre_max_size);
    let top_scores: Vec<f32> = top.iter().map(|&i| scores[i]).collect();
    torch_order::sort_descending(&top_scores)
        .into_iter()
        .map(|i| top[i])
        .collect()
}

/// Greedy rotated NMS over `boxes` (already in [`nms_order`]); returns the positions of the
/// first `NMS_POST_MAXSIZE` survivors.
fn nms_in_order(boxes: &[f32], cols: usize, post: &PostProcessing) -> Vec<usize> {
    let order: Vec<usize> = (0..boxes.len() / cols).collect();
    // The boxes and the order are built here, so the shape checks cannot fail.
    nms::nms_bev_ordered(
        boxes,
        cols,
        &order,
        post.nms.thresh,
        Some(post.nms.post_max_size),
    )
    .unwrap_or_default()
}

// ----------------------------------------------------------------------------------------
// CenterPoint head

#[derive(Clone, Debug)]
pub struct CenterHead {
    pub shared: Unit,
    /// Per head, its branches in order (`center`, ..., `hm`), each a list of convs.
    pub heads: Vec<Vec<(String, Vec<Unit>)>>,
    /// Global class index of each head's classes.
    class_ids: Vec<Vec<usize>>,
    cfg: CenterHeadConfig,
    point_cloud_range: [f32; 6],
    voxel_size: [f32; 3],
}

impl CenterHead {
    /// Head `head`'s `hm` scores; its other branches (`center`, `dim`, ...) place boxes.
    fn output_kind(head: usize, branch: &str) -> OutputKind {
        OutputKind {
            role: if branch == "hm" {
                OutputRole::Confidence
            } else {
                OutputRole::Locality
            },
            layout: OutputLayout::Planes,
            head,
        }
    }

    pub fn load(
        w: &Weights,
        cfg: &CenterHeadConfig,
        data: &DataConfig,
        class_names: &[String],
        in_channels: usize,
    ) -> Result<Self, HeadError> {
        let c = cfg.shared_conv_channel;
        let shared = Unit::load(
            w,
            UnitSpec {
                prefix: "dense_head.shared_conv.0",
                kind: UnitKind::Conv {
                    stride: 1,
                    padding: 1,
                },
                in_channels,
                out_channels: c,
                kernel: 3,
                bias: cfg.use_bias_before_norm,
                bn: Some(("dense_head.shared_conv.1", cfg.bn_eps)),
                relu: true,
            },
        )?;
        let mut heads = Vec::new();
        let mut class_ids = Vec::new();
        for (h, names) in cfg.class_names_each_head.iter().enumerate() {
            let mut branches = Vec::new();
            for (name, out, num_conv) in &cfg.head_order {
                let out = if name == "hm" { names.len() } else { *out };
                let mut units = Vec::new();
                for k in 0..num_conv.saturating_sub(1) {
                    let prefix = format!("dense_head.heads_list.{h}.{name}.{k}.0");
                    let bn = format!("dense_head.heads_list.{h}.{name}.{k}.1");
                    units.push(Unit::load(
                        w,
                        UnitSpec {
                            prefix: &prefix,
                            kind: UnitKind::Conv {
                                stride: 1,
                                padding: 1,
                            },
                            in_channels: c,
                            out_channels: c,
                            kernel: 3,
                            bias: cfg.use_bias_before_norm,
                            bn: Some((&bn, cfg.bn_eps)),
                            relu: true,
                        },
                    )?);
                }
                let prefix = format!(
                    "dense_head.heads_list.{h}.{name}.{}",
                    num_conv.saturating_sub(1)
                );
                units.push(Unit::load(
                    w,
                    UnitSpec {
                        prefix: &prefix,
                        kind: UnitKind::Conv {
                            stride: 1,
                            padding: 1,
                        },
                        in_channels: c,
                        out_channels: out,
                        kernel: 3,
                        bias: true,
                        bn: None,
                        relu: false,
                    },
                )?);
                branches.push((name.clone(), units));
            }
            heads.push(branches);
            class_ids.push(
                names
                    .iter()
                    .map(|n| class_names.iter().position(|c| c == n).unwrap_or(0))
                    .collect(),
            );
        }
        for required in ["center", "center_z", "dim", "rot"] {
            if !cfg.head_order.iter().any(|(n, _, _)| n == required) {
                return Err(HeadError::Config(format!(
                    "CenterHead SEPARATE_HEAD_CFG lacks the `{required}` branch needed to decode boxes"
                )));
            }
        }
        Ok(CenterHead {
            shared,
            heads,
            class_ids,
            cfg: cfg.clone(),
            point_cloud_range: data.point_cloud_range,
            voxel_size: data.voxel_size,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<RawOutputs, NnError> {
        self.forward_taped(x, None)
    }

    fn forward_taped(
        &self,
        x: &Tensor,
        mut tape: Option<&mut HeadTape>,
    ) -> Result<RawOutputs, NnError> {
        let shared = self.shared.forward_map(x)?;
        let mut outputs = Vec::new();
        for (h, branches) in self.heads.iter().enumerate() {
            for (name, units) in branches {
                let mut maps = Vec::new();
                let mut y = units[0].forward_map(&shared)?;
                for u in &units[1..] {
                    let next = u.forward_map(&y)?;
                    let prev = std::mem::replace(&mut y, next);
                    if tape.is_some() {
                        maps.push(prev);
                    }
                }
                if let Some(t) = tape.as_deref_mut() {
                    maps.push(y.clone());
                    t.branches.push(maps);
                }
                outputs.push(RawOutput {
                    name: format!("head{h}.{name}"),
                    kind: CenterHead::output_kind(h, name),
                    tensor: with_batch(y),
                });
            }
        }
        if let Some(t) = tape {
            t.shared = Some(shared);
        }
        Ok(RawOutputs { outputs })
    }

    /// VJP through every branch (skipping branches with no gradient) and the shared conv.
    fn backward(
        &self,
        x: &Tensor,
        tape: &HeadTape,
        d_raw: &RawOutputs,
    ) -> Result<(Tensor, Vec<UnitGrads>), NnError> {
        let missing = |msg: &str| nn::NnError::Invalid {
            op: "center head backward",
            msg: msg.to_string(),
        };
        let shared = tape
            .shared
            .as_ref()
            .ok_or_else(|| missing("the tape holds no forward pass"))?;
        let mut d_shared = Tensor::zeros(&shared.shape);
        let mut branch_grads = Vec::new();
        let mut maps_iter = tape.branches.iter();
        for (h, branches) in self.heads.iter().enumerate() {
            for (name, units) in branches {
                let maps = maps_iter
                    .next()
                    .ok_or_else(|| missing("the tape misses a branch"))?;
                let key = format!("head{h}.{name}");
                let Some(d) = d_raw.get(&key) else {
                    branch_grads.extend(units.iter().map(UnitGrads::zeros));
                    continue;
                };
                let out = &maps[maps.len() - 1];
                if d.data.len() != out.data.len() {
                    return Err(missing(&format!(
                        "gradient of {key} has shape {:?}, expected [1, {:?}]",
                        d.shape, out.shape
                    )));
                }
                let mut dy = Tensor::from_vec(&out.shape, d.data.clone());
                let mut grads = Vec::with_capacity(units.len());
                for (k, u) in units.iter().enumerate().rev() {
                    let input = if k == 0 { shared } else { &maps[k - 1] };
                    let (dx, g) = u.backward(input, &maps[k], dy, true)?;
                    grads.push(g);
                    dy = dx.ok_or_else(|| missing("no input gradient"))?;
                }
                for (a, b) in d_shared.data.iter_mut().zip(&dy.data) {
                    *a += b;
                }
                grads.reverse();
                branch_grads.extend(grads);
            }
        }
        let (dx, g) = self.shared.backward(x, shared, d_shared, true)?;
        let mut grads = vec![g];
        grads.extend(branch_grads);
        Ok((dx.ok_or_else(|| missing("no input gradient"))?, grads))
    }

    /// `decode_bbox_from_heatmap` per head (top-k per class, then top-k overall, no max-pool),
    /// then class-agnostic NMS per head; heads concatenated.
    fn decode(&self, raw: &RawOutputs) -> Vec<Detection> {
        let post = &self.cfg.post;
        let k = post.max_obj_per_sample;
        let stride = self.cfg.feature_map_stride as f32;
        let limit = post.post_center_limit_range.unwrap_or([
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::INFINITY,
            f32::INFINITY,
        ]);
        let mut out = Vec::new();
        for h in 0..self.heads.len() {
            let get = |b: &str| raw.get(&format!("head{h}.{b}"));
            let (Some(hm), Some(center), Some(cz), Some(dim), Some(rot)) = (
                get("hm"),
                get("center"),
                get("center_z"),
                get("dim"),
                get("rot"),
            ) else {
                continue;
            };
            let vel = get("vel");
            let (nc, hh, ww) = (hm.shape[1], hm.shape[2], hm.shape[3]);
            let plane = hh * ww;
            // `_topk`: top-k per class over H*W, then top-k over all classes, with
            // PyTorch's tie order.
            let sig: Vec<f32> = hm.data.iter().map(|&v| sigmoid(v)).collect();
            let kk = k.min(plane);
            let mut cand_scores = Vec::with_capacity(nc * kk);
            let mut cand_pixels = Vec::with_capacity(nc * kk);
            for c in 0..nc {
                let s = &sig[c * plane..(c + 1) * plane];
                for p in torch_order::topk(s, kk) {
                    cand_scores.push(s[p]);
                    cand_pixels.push(p);
                }
            }
            let all: Vec<(f32, usize, usize)> = torch_order::topk(&cand_scores, k)
                .into_iter()
                .map(|i| (cand_scores[i], i / kk, cand_pixels[i]))
                .collect();
            let mut boxes = Vec::new();
            let mut scores = Vec::new();
            let mut labels = Vec::new();
            let mut vels = Vec::new();
            for (score, c, p) in all {
                let (iy, ix) = (p / ww, p % ww);
                let at = |t: &Tensor, ch: usize| t.data[ch * plane + p];
                let x = (ix as f32 + at(center, 0)) * stride * self.voxel_size[0]
                    + self.point_cloud_range[0];
                let y = (iy as f32 + at(center, 1)) * stride * self.voxel_size[1]
                    + self.point_cloud_range[1];
                let z = at(cz, 0);
                let b = [
                    x,
                    y,
                    z,
                    at(dim, 0).exp(),
                    at(dim, 1).exp(),
                    at(dim, 2).exp(),
                    at(rot, 1).atan2(at(rot, 0)),
                ];
                let inside = b[0] >= limit[0]
                    && b[1] >= limit[1]
                    && b[2] >= limit[2]
                    && b[0] <= limit[3]
                    && b[1] <= limit[4]
                    && b[2] <= limit[5];
                if !inside || score <= post.score_thresh {
                    continue;
                }
                boxes.extend_from_slice(&b);
                scores.push(score);
                labels.push(self.class_ids[h][c] + 1);
                vels.push(vel.map(|v| [at(v, 0), at(v, 1)]));
            }
            let order = nms_order(&scores, post);
            let ordered: Vec<f32> = order
                .iter()
                .flat_map(|&i| boxes[i * 7..i * 7 + 7].iter().copied())
                .collect();
            for pos in nms_in_order(&ordered, 7, post) {
                let i = order[pos];
                let mut bbox = [0f32; 7];
                bbox.copy_from_slice(&boxes[i * 7..i * 7 + 7]);
                out.push(Detection {
                    bbox,
                    velocity: vels[i],
                    score: scores[i],
                    label: labels[i],
                });
            }
        }
        out
    }
}
