//! What the detection distortion D compares, per raw head output (DESIGN.md, "The method", 1).
//!
//! `Raw` is DESIGN.md's definition: every element of every output tensor counts equally and
//! logits are compared as logits. On a trained detector this is dominated by the background:
//! hundreds of thousands of anchors whose logits sit far below zero, where a pruned model may
//! move a logit from -9 to -5 without changing a single detection. Allocations that minimise
//! it can lose most of the AP (measured on the demo model: docs/pruning-report.md).
//!
//! `Detection` (the default) compares what the detector reports:
//! - confidence outputs (`cls_preds`, `hm`) after the sigmoid, i.e. as scores;
//! - locality outputs (boxes, directions, CenterPoint regressions) weighted per location by
//!   the dense model's confidence there (the highest class score of that anchor or BEV cell),
//!   so a box error counts as much as the box is likely to be reported;
//! - each component of a box code (x, y, z, l, w, h, heading residuals; CenterPoint's map
//!   channels) normalised by its own variance. With one variance per tensor the heading
//!   residual, the widest-spread component, dominates, and an allocation that keeps headings
//!   but loses centres and sizes (what BEV IoU 0.7 needs) looks good.
//!
//! For one tensor with transform `T`, element weights `w` (from the dense outputs of the same
//! scan) and normalising variance `var_i` (the `w`-weighted variance over the calibration set
//! of `T(Y)`, or of element i's component): `D_t = sum_i w_i (T(Y~_i) - T(Y_i))^2 / var_i /
//! sum_i w_i`. Its Gauss-Newton form scales each probe element by
//! `T'(Y_i) sqrt(w_i / (var_i sum w))`.

use serde::{Deserialize, Serialize};

use crate::detect::{OutputLayout, OutputRole, RawOutput, RawOutputs};
use crate::nn::Tensor;

use super::Group;
use super::curves::OutputNorm;

/// Which distortion the curves measure (stored in the curves file; see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weighting {
    /// Logits and regressions as they are, every element equal (the paper's form). Files
    /// written without the field use it.
    #[default]
    Raw,
    /// Scores after the sigmoid; locality weighted by the dense confidence per location.
    Detection,
}

impl Weighting {
    pub fn name(self) -> &'static str {
        match self {
            Weighting::Raw => "raw",
            Weighting::Detection => "detection",
        }
    }
}

impl std::str::FromStr for Weighting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "raw" => Ok(Weighting::Raw),
            "detection" => Ok(Weighting::Detection),
            _ => Err(format!(
                "unknown distortion `{s}` (expected detection or raw)"
            )),
        }
    }
}

pub fn sigmoid(y: f32) -> f64 {
    1.0 / (1.0 + (-(y as f64)).exp())
}

/// How one output tensor of one scan enters D.
pub struct TensorWeights {
    /// Compare after the sigmoid (confidence outputs under `Detection`).
    pub sigmoid: bool,
    /// Per-element importance; `None`: all 1.
    pub weights: Option<Vec<f32>>,
    /// The components (box code channels), each normalised by its own variance.
    pub channels: Option<Channels>,
}

/// Which component an element of a locality output belongs to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Channels {
    /// Anchor head, NHWC: `count` code values per anchor, element `i` is `i % count`.
    Interleaved { count: usize },
    /// CenterPoint, NCHW: element `i` is channel `i / plane`.
    Planar { count: usize, plane: usize },
}

impl Channels {
    pub fn count(self) -> usize {
        match self {
            Channels::Interleaved { count } | Channels::Planar { count, .. } => count,
        }
    }

    pub fn of(self, i: usize) -> usize {
        match self {
            Channels::Interleaved { count } => i % count,
            Channels::Planar { plane, .. } => i / plane,
        }
    }
}

impl TensorWeights {
    /// The transformed value the distortion compares.
    pub fn value(&self, y: f32) -> f64 {
        if self.sigmoid { sigmoid(y) } else { y as f64 }
    }

    /// `dT/dy` at `y` (the Gauss-Newton linearisation of the transform).
    pub fn slope(&self, y: f32) -> f64 {
        if self.sigmoid {
            let s = sigmoid(y);
            s * (1.0 - s)
        } else {
            1.0
        }
    }

    pub fn weight(&self, i: usize) -> f64 {
        self.weights.as_ref().map_or(1.0, |w| w[i] as f64)
    }

    /// `sum_i w_i` over a tensor of `n` elements.
    pub fn total(&self, n: usize) -> f64 {
        self.weights
            .as_ref()
            .map_or(n as f64, |w| w.iter().map(|&v| v as f64).sum())
    }

    /// The variance that normalises element `i`: its component's when the norm has them,
    /// else the tensor's (usable as a divisor).
    fn variance_of(&self, i: usize, norm: &OutputNorm) -> f64 {
        match self.channels {
            Some(c) if norm.channel_variance.len() == c.count() => {
                usable_variance(norm.channel_variance[c.of(i)])
            }
            _ => usable_variance(norm.variance),
        }
    }
}

/// The weights of every output of one scan's dense outputs, in `raw.outputs` order.
pub fn tensor_weights(raw: &RawOutputs, weighting: Weighting) -> Vec<TensorWeights> {
    raw.outputs
        .iter()
        .map(|o| {
            let detection = weighting == Weighting::Detection;
            if o.kind.role == OutputRole::Confidence {
                return TensorWeights {
                    sigmoid: detection,
                    weights: None,
                    channels: None,
                };
            }
            let located = detection.then(|| location_weights(raw, o)).flatten();
            TensorWeights {
                sigmoid: false,
                channels: located.as_ref().map(|l| l.1),
                weights: located.map(|l| l.0),
            }
        })
        .collect()
}

/// One weight per element of locality output `o`: the dense confidence (best class score)
/// of the anchor or BEV cell it belongs to, from its head's confidence output; and its
/// components. `None` when the shapes do not fit together.
fn location_weights(raw: &RawOutputs, o: &RawOutput) -> Option<(Vec<f32>, Channels)> {
    let scores = raw.outputs.iter().find(|c| {
        c.kind.role == OutputRole::Confidence
            && c.kind.head == o.kind.head
            && c.kind.layout == o.kind.layout
    })?;
    let n = o.tensor.numel();
    match o.kind.layout {
        OutputLayout::Planes => {
            let plane = plane_size(&scores.tensor)?;
            if !n.is_multiple_of(plane) {
                return None;
            }
            let mut best = vec![0f32; plane];
            best_over_planes(&mut best, &scores.tensor.data);
            let channels = Channels::Planar {
                count: n / plane,
                plane,
            };
            Some(((0..n).map(|i| best[i % plane]).collect(), channels))
        }
        OutputLayout::Anchors { anchors } => {
            let per_anchor = anchor_values(&scores.tensor, anchors)?;
            let best: Vec<f32> = scores
                .tensor
                .data
                .chunks_exact(per_anchor)
                .map(best_score)
                .collect();
            if best.is_empty() || !n.is_multiple_of(best.len()) {
                return None;
            }
            let per_anchor = n / best.len();
            let channels = Channels::Interleaved { count: per_anchor };
            Some(((0..n).map(|i| best[i / per_anchor]).collect(), channels))
        }
    }
}

/// `H * W` of a `[1, C, H, W]` output (`None` for another rank or an empty grid).
fn plane_size(t: &Tensor) -> Option<usize> {
    let [_, _, h, w] = t.shape[..] else {
        return None;
    };
    (h * w > 0).then_some(h * w)
}

/// Values per anchor of a `[1, H, W, anchors * k]` output: `k` (`None` when it does not
/// divide).
fn anchor_values(t: &Tensor, anchors: usize) -> Option<usize> {
    let [_, _, _, per_cell] = t.shape[..] else {
        return None;
    };
    (anchors > 0 && per_cell > 0 && per_cell.is_multiple_of(anchors)).then_some(per_cell / anchors)
}

/// The dense model's confidence over its BEV output grid: per cell the best class score
/// (after the sigmoid) of any anchor or heatmap there. What reconstruction weights its input
/// columns by, so that the fit favours where the detector sees objects.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfidenceMap {
    pub h: usize,
    pub w: usize,
    /// `h x w` row-major, in `[0, 1]`.
    pub data: Vec<f32>,
}

impl ConfidenceMap {
    /// The best over every confidence output (an anchor head's `[1, H, W, A * classes]`,
    /// a centre head's `[1, C, H, W]` heatmaps); `None` without one, or when their grids
    /// differ.
    pub fn of(raw: &RawOutputs) -> Option<ConfidenceMap> {
        let mut map: Option<ConfidenceMap> = None;
        for o in raw
            .outputs
            .iter()
            .filter(|o| o.kind.role == OutputRole::Confidence)
        {
            let (h, w) = match (o.kind.layout, &o.tensor.shape[..]) {
                (OutputLayout::Anchors { .. }, &[_, h, w, _]) => (h, w),
                (OutputLayout::Planes, &[_, _, h, w]) => (h, w),
                _ => return None,
            };
            let m = map.get_or_insert_with(|| ConfidenceMap {
                h,
                w,
                data: vec![0.0; h * w],
            });
            if (m.h, m.w) != (h, w) || h * w == 0 {
                return None;
            }
            match o.kind.layout {
                OutputLayout::Anchors { .. } => {
                    let per_cell = o.tensor.numel() / (h * w);
                    for (b, cell) in m
                        .data
                        .iter_mut()
                        .zip(o.tensor.data.chunks_exact(per_cell.max(1)))
                    {
                        *b = b.max(best_score(cell));
                    }
                }
                OutputLayout::Planes => best_over_planes(&mut m.data, &o.tensor.data),
            }
        }
        map
    }

    /// One weight per cell of an `h x w` grid covering the same area (a layer's map at its
    /// own stride): `floor` plus the highest confidence within `dilate` cells of this map
    /// around the area the cell covers (features next to an object shape its box too).
    pub fn column_weights(&self, h: usize, w: usize, floor: f32, dilate: usize) -> Vec<f32> {
        let span = |i: usize, n: usize, m: usize| {
            // Cells of this map (m of them) under cell i of n, widened by `dilate`.
            let lo = (i * m / n.max(1)).saturating_sub(dilate);
            let hi = ((i + 1) * m).div_ceil(n.max(1)).max(lo + 1) + dilate;
            (lo, hi.min(m))
        };
        // Max over rows first, then over columns (separable).
        let mut rows = vec![0f32; h * self.w];
        for y in 0..h {
            let (y0, y1) = span(y, h, self.h);
            for yy in y0..y1 {
                let src = &self.data[yy * self.w..][..self.w];
                for (d, &v) in rows[y * self.w..][..self.w].iter_mut().zip(src) {
                    *d = d.max(v);
                }
            }
        }
        let mut out = vec![floor; h * w];
        for y in 0..h {
            let src = &rows[y * self.w..][..self.w];
            for x in 0..w {
                let (x0, x1) = span(x, w, self.w);
                let best = src[x0..x1].iter().fold(0f32, |b, &v| b.max(v));
                out[y * w + x] += best;
            }
        }
        out
    }
}

/// The highest score (after the sigmoid) among `logits`; 0 for none.
fn best_score(logits: &[f32]) -> f32 {
    logits.iter().fold(0f32, |b, &z| b.max(sigmoid(z) as f32))
}

/// `best[i] = max(best[i], sigmoid(planes[p][i]))` over the planes of `best.len()` cells
/// in `planes` (a `[C, H, W]` heatmap).
fn best_over_planes(best: &mut [f32], planes: &[f32]) {
    for plane in planes.chunks_exact(best.len().max(1)) {
        for (b, &z) in best.iter_mut().zip(plane) {
            *b = b.max(sigmoid(z) as f32);
        }
    }
}

/// Weighted first and second moments.
#[derive(Clone, Copy, Debug, Default)]
struct Moments {
    w: f64,
    s: f64,
    ss: f64,
}

impl Moments {
    fn add(&mut self, w: f64, v: f64) {
        self.w += w;
        self.s += w * v;
        self.ss += w * v * v;
    }

    fn variance(&self) -> f64 {
        if self.w <= 0.0 {
            return 0.0;
        }
        let mean = self.s / self.w;
        (self.ss / self.w - mean * mean).max(0.0)
    }
}

/// Running weighted moments of one output's transformed values over the calibration scans,
/// for the whole tensor and per component: its normalisation.
#[derive(Clone, Debug, Default)]
pub struct WeightedMoments {
    all: Moments,
    channels: Vec<Moments>,
}

impl WeightedMoments {
    pub fn add(&mut self, t: &Tensor, tw: &TensorWeights) {
        if let Some(c) = tw.channels
            && self.channels.len() != c.count()
        {
            self.channels = vec![Moments::default(); c.count()];
        }
        for (i, &y) in t.data.iter().enumerate() {
            let (w, v) = (tw.weight(i), tw.value(y));
            self.all.add(w, v);
            if let Some(c) = tw.channels {
                self.channels[c.of(i)].add(w, v);
            }
        }
    }

    pub fn variance(&self) -> f64 {
        self.all.variance()
    }

    /// The normalisation record of output `output`, of `group`.
    pub fn norm(&self, output: String, group: Group) -> OutputNorm {
        OutputNorm {
            group,
            variance: self.variance(),
            channel_variance: self.channels.iter().map(Moments::variance).collect(),
            output,
        }
    }
}

/// A usable normalising variance (a constant output gets 1, so D stays finite).
pub fn usable_variance(v: f64) -> f64 {
    if v > 1e-20 { v } else { 1.0 }
}

/// `D_t` of one tensor: `sum w (T(a) - T(b))^2 / var / sum w`, `b` the dense output.
pub fn tensor_distortion(
    pruned: &[f32],
    dense: &[f32],
    tw: &TensorWeights,
    norm: &OutputNorm,
) -> f64 {
    let total = tw.total(dense.len());
    if total <= 0.0 {
        return 0.0;
    }
    let s: f64 = pruned
        .iter()
        .zip(dense)
        .enumerate()
        .map(|(i, (&a, &b))| {
            tw.weight(i) * (tw.value(a) - tw.value(b)).powi(2) / tw.variance_of(i, norm)
        })
        .sum();
    s / total
}

/// `dD_t / dY~` of [`tensor_distortion`] with respect to the pruned outputs: `2 w_i (T(a_i)
/// - T(b_i)) T'(a_i) / var_i / sum w` (what label-free distillation descends).
pub fn tensor_distortion_grad(
    pruned: &[f32],
    dense: &[f32],
    tw: &TensorWeights,
    norm: &OutputNorm,
) -> Vec<f32> {
    let total = tw.total(dense.len());
    if total <= 0.0 {
        return vec![0.0; pruned.len()];
    }
    pruned
        .iter()
        .zip(dense)
        .enumerate()
        .map(|(i, (&a, &b))| {
            let diff = tw.value(a) - tw.value(b);
            (2.0 * tw.weight(i) * diff * tw.slope(a) / tw.variance_of(i, norm) / total) as f32
        })
        .collect()
}

/// Per-element probe scales `T'(y) sqrt(w / (var sum w))` (Gauss-Newton form of D_t).
pub fn probe_scales(dense: &[f32], tw: &TensorWeights, norm: &OutputNorm) -> Vec<f32> {
    let total = tw.total(dense.len()).max(1e-30);
    dense
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            (tw.slope(y) * (tw.weight(i) / (tw.variance_of(i, norm) * total)).sqrt()) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::OutputKind;

    fn norm(variance: f64) -> OutputNorm {
        OutputNorm {
            output: "t".into(),
            group: Group::Locality,
            variance,
            channel_variance: vec![],
        }
    }

    fn output(name: &str, role: OutputRole, layout: OutputLayout, tensor: Tensor) -> RawOutput {
        let head = name
            .strip_prefix("head")
            .map_or(0, |h| h.as_bytes()[0] - b'0') as usize;
        RawOutput {
            name: name.into(),
            kind: OutputKind { role, layout, head },
            tensor,
        }
    }

    fn anchor_outputs() -> RawOutputs {
        // One cell, 2 anchors, 3 classes; box code 7, direction 2.
        let anchors = OutputLayout::Anchors { anchors: 2 };
        RawOutputs {
            outputs: vec![
                output(
                    "cls_preds",
                    OutputRole::Confidence,
                    anchors,
                    Tensor::from_vec(&[1, 1, 1, 6], vec![-9.0, -8.0, 2.0, -6.0, -7.0, -9.0]),
                ),
                output(
                    "box_preds",
                    OutputRole::Locality,
                    anchors,
                    Tensor::from_vec(&[1, 1, 1, 14], (0..14).map(|i| i as f32).collect()),
                ),
                output(
                    "dir_cls_preds",
                    OutputRole::Locality,
                    anchors,
                    Tensor::from_vec(&[1, 1, 1, 4], vec![0.0; 4]),
                ),
            ],
        }
    }

    /// The map takes each cell's best score; weights pool it over the cells a coarser or
    /// finer grid covers, widened by `dilate`, plus the floor.
    #[test]
    fn confidence_map_and_its_column_weights() {
        let map = ConfidenceMap::of(&anchor_outputs()).unwrap();
        assert_eq!((map.h, map.w), (1, 1));
        assert!((map.data[0] - sigmoid(2.0) as f32).abs() < 1e-6);
        // 4 x 4 cells, one confident at (1, 2).
        let mut data = vec![0.0; 16];
        data[6] = 0.5;
        let m = ConfidenceMap { h: 4, w: 4, data };
        let same = m.column_weights(4, 4, 0.1, 0);
        assert_eq!(same.iter().filter(|&&w| w > 0.1).count(), 1);
        assert!((same[6] - 0.6).abs() < 1e-6);
        // Dilated by one cell: the 3 x 3 neighbourhood.
        let wide = m.column_weights(4, 4, 0.1, 1);
        assert_eq!(wide.iter().filter(|&&w| w > 0.1).count(), 9);
        // A 2 x 2 grid: the cell covering (1, 2) is (0, 1); a 8 x 8 grid: 4 cells.
        let coarse = m.column_weights(2, 2, 0.1, 0);
        assert_eq!(coarse, vec![0.1, 0.6, 0.1, 0.1]);
        let fine = m.column_weights(8, 8, 0.0, 0);
        assert_eq!(fine.iter().filter(|&&w| w > 0.0).count(), 4);
        assert!(fine[2 * 8 + 4] > 0.0 && fine[3 * 8 + 5] > 0.0);
        // A centre head's heatmaps: the best over classes and heads.
        let hm = |v: f32| Tensor::from_vec(&[1, 2, 1, 2], vec![v, -9.0, -9.0, -9.0]);
        let raw = RawOutputs {
            outputs: vec![
                output(
                    "head0.hm",
                    OutputRole::Confidence,
                    OutputLayout::Planes,
                    hm(0.0),
                ),
                output(
                    "head1.hm",
                    OutputRole::Confidence,
                    OutputLayout::Planes,
                    hm(3.0),
                ),
            ],
        };
        let c = ConfidenceMap::of(&raw).unwrap();
        assert!((c.data[0] - sigmoid(3.0) as f32).abs() < 1e-6);
        assert!(c.data[1] < 1e-3);
    }

    #[test]
    fn raw_weights_everything_equally() {
        let tw = tensor_weights(&anchor_outputs(), Weighting::Raw);
        assert!(tw.iter().all(|t| !t.sigmoid && t.weights.is_none()));
    }

    #[test]
    fn detection_weights_boxes_by_their_anchor_score() {
        let tw = tensor_weights(&anchor_outputs(), Weighting::Detection);
        assert!(tw[0].sigmoid && tw[0].weights.is_none());
        assert_eq!(tw[1].channels, Some(Channels::Interleaved { count: 7 }));
        let (a0, a1) = (sigmoid(2.0) as f32, sigmoid(-6.0) as f32);
        let boxes = tw[1].weights.as_ref().unwrap();
        assert!(boxes[..7].iter().all(|&w| w == a0));
        assert!(boxes[7..].iter().all(|&w| w == a1));
        assert_eq!(tw[2].weights.as_ref().unwrap(), &vec![a0, a0, a1, a1]);
    }

    #[test]
    fn centerpoint_regressions_use_their_heads_heatmap() {
        let planes = OutputLayout::Planes;
        let raw = RawOutputs {
            outputs: vec![
                output(
                    "head0.hm",
                    OutputRole::Confidence,
                    planes,
                    Tensor::from_vec(&[1, 2, 1, 2], vec![0.0, -5.0, -9.0, 3.0]),
                ),
                // Another head's heatmap, for other classes: not this regression's weights.
                output(
                    "head1.hm",
                    OutputRole::Confidence,
                    planes,
                    Tensor::from_vec(&[1, 1, 1, 2], vec![5.0, 5.0]),
                ),
                output(
                    "head0.center",
                    OutputRole::Locality,
                    planes,
                    Tensor::from_vec(&[1, 2, 1, 2], vec![1.0; 4]),
                ),
            ],
        };
        let tw = tensor_weights(&raw, Weighting::Detection);
        let (c0, c1) = (sigmoid(0.0) as f32, sigmoid(3.0) as f32);
        assert_eq!(tw[2].weights.as_ref().unwrap(), &vec![c0, c1, c0, c1]);
        let ch = tw[2].channels.unwrap();
        assert_eq!((ch.count(), ch.of(1), ch.of(2)), (2, 0, 1));
    }

    #[test]
    fn each_box_component_is_normalised_by_its_own_variance() {
        // Two anchors, code of 2: component 0 spread widely, component 1 narrowly.
        let t = Tensor::from_vec(&[1, 1, 1, 4], vec![10.0, 0.1, -10.0, -0.1]);
        let tw = TensorWeights {
            sigmoid: false,
            weights: Some(vec![1.0; 4]),
            channels: Some(Channels::Interleaved { count: 2 }),
        };
        let mut m = WeightedMoments::default();
        m.add(&t, &tw);
        let n = m.norm("box_preds".into(), Group::Locality);
        assert!((n.channel_variance[0] - 100.0).abs() < 1e-9);
        assert!((n.channel_variance[1] - 0.01).abs() < 1e-9);
        // The same relative error on either component costs the same.
        let wide = tensor_distortion(&[11.0, 0.1, -10.0, -0.1], &t.data, &tw, &n);
        let narrow = tensor_distortion(&[10.0, 0.11, -10.0, -0.1], &t.data, &tw, &n);
        assert!((wide - narrow).abs() < 1e-5 * wide, "{wide} vs {narrow}");
    }

    #[test]
    fn background_logit_moves_count_little_as_scores() {
        let raw = TensorWeights {
            sigmoid: false,
            weights: None,
            channels: None,
        };
        let scores = TensorWeights {
            sigmoid: true,
            weights: None,
            channels: None,
        };
        // A background logit moving by 4 against a foreground logit moving by 1.
        let d = |tw: &TensorWeights, a: f32, b: f32| tensor_distortion(&[a], &[b], tw, &norm(1.0));
        assert!(d(&raw, -5.0, -9.0) > d(&raw, 0.0, 1.0));
        assert!(d(&scores, -5.0, -9.0) < 0.01 * d(&scores, 0.0, 1.0));
    }

    #[test]
    fn probe_scales_square_to_the_distortion_weights() {
        let tw = TensorWeights {
            sigmoid: true,
            weights: Some(vec![0.5, 2.0]),
            channels: None,
        };
        let dense = [0.3f32, -1.0];
        let s = probe_scales(&dense, &tw, &norm(0.1));
        // For a small change e of element 0, D ~ s_0^2 e^2.
        let e = 1e-3f32;
        let d = tensor_distortion(&[0.3 + e, -1.0], &dense, &tw, &norm(0.1));
        let want = (s[0] as f64 * e as f64).powi(2);
        assert!((d - want).abs() < 1e-3 * want, "{d} vs {want}");
    }

    #[test]
    fn distortion_gradient_matches_finite_differences() {
        let tw = TensorWeights {
            sigmoid: true,
            weights: Some(vec![0.5, 2.0, 1.0]),
            channels: None,
        };
        let dense = [0.3f32, -1.0, 2.0];
        let pruned = [0.1f32, -0.5, 2.5];
        let g = tensor_distortion_grad(&pruned, &dense, &tw, &norm(0.1));
        for i in 0..3 {
            let h = 1e-3f32;
            let (mut up, mut down) = (pruned, pruned);
            up[i] += h;
            down[i] -= h;
            let fd = (tensor_distortion(&up, &dense, &tw, &norm(0.1))
                - tensor_distortion(&down, &dense, &tw, &norm(0.1)))
                / (2.0 * h as f64);
            assert!(
                (fd - g[i] as f64).abs() < 1e-3 * fd.abs().max(1e-3),
                "{i}: {fd} vs {}",
                g[i]
            );
        }
    }

    #[test]
    fn weighted_variance() {
        let mut m = WeightedMoments::default();
        let tw = TensorWeights {
            sigmoid: false,
            weights: Some(vec![1.0, 1.0, 0.0]),
            channels: None,
        };
        m.add(&Tensor::from_vec(&[3], vec![1.0, 3.0, 100.0]), &tw);
        assert!((m.variance() - 1.0).abs() < 1e-12);
    }
}
