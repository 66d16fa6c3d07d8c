//! The `pruneview-curves/1` file: per-layer distortion vs sparsity (DESIGN.md, "File formats").
//!
//! Curves are an interchange format: files computed elsewhere (e.g. in PyTorch) load as long
//! as they carry the documented fields, and shards computed on disjoint scan subsets merge
//! exactly because they carry sums and counts next to the means. Shards can only be merged
//! when they share one normalisation (the dense outputs' variances); `pruneview curves
//! --norm-from` makes shards share it.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Group, Lambdas, Ranking, Weighting};

pub const CURVES_FORMAT: &str = "pruneview-curves/1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Curves {
    pub format: String,
    pub model: ModelInfo,
    pub calibration: Calibration,
    pub layers: Vec<LayerCurve>,
    /// Predicted-vs-measured agreement, when measured curves were computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fidelity: Option<Fidelity>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub weights_sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Number of calibration scans.
    pub scans: usize,
    /// Gauss-Newton probes per scan and group.
    pub probes: usize,
    /// Scan identities (file names), so merges can check the subsets are disjoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scan_ids: Vec<String>,
    #[serde(default)]
    pub ranking: Ranking,
    /// What D compares (files without the field: `raw`, the paper's form).
    #[serde(default)]
    pub distortion: Weighting,
    /// Per raw head output: the dense output's variance over the calibration set that the
    /// distortion is normalised by. Shards must agree on it to merge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub normalization: Vec<OutputNorm>,
    /// Seed of the Rademacher probes (each scan's probes derive from it and the scan id).
    #[serde(default)]
    pub seed: u64,
}

/// The normalisation of one raw head output tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputNorm {
    pub output: String,
    pub group: Group,
    pub variance: f64,
    /// Per component of a box code (`detection` distortion): each one's variance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channel_variance: Vec<f64>,
}

/// Values per group, aligned with a sparsity list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupValues {
    pub confidence: Vec<f64>,
    pub locality: Vec<f64>,
}

impl GroupValues {
    pub fn zeros(n: usize) -> Self {
        GroupValues {
            confidence: vec![0.0; n],
            locality: vec![0.0; n],
        }
    }
    pub fn get(&self, g: Group) -> &[f64] {
        match g {
            Group::Confidence => &self.confidence,
            Group::Locality => &self.locality,
        }
    }
    pub fn get_mut(&mut self, g: Group) -> &mut Vec<f64> {
        match g {
            Group::Confidence => &mut self.confidence,
            Group::Locality => &mut self.locality,
        }
    }
    /// `lambda_conf * confidence + lambda_loc * locality`, element-wise.
    pub fn combined(&self, l: Lambdas) -> Vec<f64> {
        self.confidence
            .iter()
            .zip(&self.locality)
            .map(|(&c, &o)| l.combine(c, o))
            .collect()
    }
    fn len_ok(&self, n: usize) -> bool {
        self.confidence.len() == n && self.locality.len() == n
    }
}

/// Exactly measured distortion of pruning only this layer, at some levels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Sparsities measured (may be a subset of the predicted levels). Files that leave it
    /// out measured every predicted level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sparsity: Vec<f64>,
    pub confidence: Vec<f64>,
    pub locality: Vec<f64>,
    /// Measured after re-estimating the BatchNorm statistics of the pruned model (see
    /// [`Measurer::measured_curves`](super::measure::Measurer::measured_curves)).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after_statistics: bool,
}

impl Measured {
    pub fn is_empty(&self) -> bool {
        self.confidence.is_empty() && self.locality.is_empty()
    }
    pub fn values(&self) -> GroupValues {
        GroupValues {
            confidence: self.confidence.clone(),
            locality: self.locality.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerCurve {
    /// The weight's state-dict name, e.g. `backbone_2d.blocks.0.1.weight`.
    pub name: String,
    pub params: usize,
    /// Dense FLOPs per scan (2 x MACs at the calibration scans' sizes).
    pub flops: f64,
    /// Weight shape (used by ERK); optional for curves computed elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shape: Vec<usize>,
    /// Sparsity levels, ascending, in [0, 1].
    pub sparsity: Vec<f64>,
    /// Predicted distortion per level: mean over scans and probes.
    pub distortion: GroupValues,
    /// Sums over scans and probes behind `distortion` (for exact shard merges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<GroupValues>,
    #[serde(default, skip_serializing_if = "Measured::is_empty")]
    pub measured: Measured,
}

/// How well the prediction agrees with measurement (the fidelity report).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Fidelity {
    pub layers: Vec<LayerFidelity>,
    pub additivity: Vec<Additivity>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerFidelity {
    pub name: String,
    /// Correlations of the combined (lambda-weighted) predicted and measured curves at the
    /// measured levels (`None` when either curve is constant there).
    pub spearman: Option<f64>,
    pub pearson: Option<f64>,
    pub levels: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Additivity {
    /// FLOPs kept by the DP allocation (fraction).
    pub flops_keep: f64,
    /// Sum of the per-layer predicted distortions of that allocation.
    pub predicted: f64,
    /// Sum of the per-layer measured distortions at the allocation (interpolated between
    /// measured levels; absent when a layer was not measured up to its sparsity): what
    /// additivity predicts from measurement alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_sum: Option<f64>,
    /// Distortion measured by pruning all layers at once.
    pub measured: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum CurvesError {
    #[error("{path}: cannot read curves: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a pruneview-curves/1 file: {reason}")]
    Parse { path: String, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("cannot merge {a} and {b}: {reason}")]
    Merge {
        a: String,
        b: String,
        reason: String,
    },
}

impl Curves {
    /// These curves with every layer's predicted distortion replaced by its measured curve,
    /// interpolated onto the predicted levels, less its value at sparsity 0 (statistics
    /// repair changes an unpruned model a little; what a layer's pruning adds to that is what
    /// the allocation trades) and never below 0. For allocating on measured, e.g.
    /// recovery-aware, curves; the error names a layer that was not measured over `[0, 1]`.
    pub fn on_measured(&self) -> Result<Curves, String> {
        let mut out = self.clone();
        for l in &mut out.layers {
            let m = &l.measured;
            let xs = if m.sparsity.is_empty() {
                &l.sparsity
            } else {
                &m.sparsity
            };
            let resample = |ys: &[f64]| -> Option<Vec<f64>> {
                let base = interpolate(xs, ys, 0.0)?;
                l.sparsity
                    .iter()
                    .map(|&s| interpolate(xs, ys, s).map(|v| (v - base).max(0.0)))
                    .collect()
            };
            let (Some(confidence), Some(locality)) =
                (resample(&m.confidence), resample(&m.locality))
            else {
                return Err(format!(
                    "{}: no measured curve over sparsities 0 to 1 (measure with --measured all --measured-levels 0,...,1)",
                    l.name
                ));
            };
            l.distortion = GroupValues {
                confidence,
                locality,
            };
            l.sum = None;
        }
        Ok(out)
    }

    /// Reads and validates a curves file.
    pub fn load(path: &Path) -> Result<Curves, CurvesError> {
        let p = path.display().to_string();
        let text =
            crate::io::read_text_limited(path, crate::io::MAX_CURVES_BYTES).map_err(|source| {
                CurvesError::Io {
                    path: p.clone(),
                    source,
                }
            })?;
        let curves: Curves = serde_json::from_str(&text).map_err(|e| CurvesError::Parse {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        curves
            .validate()
            .map_err(|reason| CurvesError::Invalid { path: p, reason })?;
        Ok(curves)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks the invariants every consumer relies on; the message names the layer.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != CURVES_FORMAT {
            return Err(format!(
                "format is `{}`, expected `{CURVES_FORMAT}`",
                self.format
            ));
        }
        if self.layers.is_empty() {
            return Err("no layers".into());
        }
        let mut names = BTreeSet::new();
        for l in &self.layers {
            let bad = |what: String| Err(format!("layer `{}`: {what}", l.name));
            if !names.insert(&l.name) {
                return bad("appears twice".into());
            }
            let n = l.sparsity.len();
            if n == 0 {
                return bad("no sparsity levels".into());
            }
            if l.sparsity.iter().any(|s| !(0.0..=1.0).contains(s))
                || l.sparsity.windows(2).any(|w| w[0] >= w[1])
            {
                return bad("sparsity levels must be ascending and within [0, 1]".into());
            }
            if !l.distortion.len_ok(n) {
                return bad(format!(
                    "distortion has {} confidence and {} locality values for {n} levels",
                    l.distortion.confidence.len(),
                    l.distortion.locality.len()
                ));
            }
            if let Some(s) = &l.sum
                && !s.len_ok(n)
            {
                return bad("`sum` does not match the sparsity levels".into());
            }
            let finite = |v: &[f64]| v.iter().all(|x| x.is_finite() && *x >= 0.0);
            if !finite(&l.distortion.confidence) || !finite(&l.distortion.locality) {
                return bad("distortion values must be finite and non-negative".into());
            }
            if !(l.flops.is_finite() && l.flops >= 0.0) {
                return bad(format!(
                    "flops {} is not a finite non-negative number",
                    l.flops
                ));
            }
            if !l.measured.is_empty() {
                let m = if l.measured.sparsity.is_empty() {
                    n
                } else {
                    l.measured.sparsity.len()
                };
                if l.measured.confidence.len() != m || l.measured.locality.len() != m {
                    return bad("measured values do not match their sparsity levels".into());
                }
            }
            if !l.shape.is_empty() && l.shape.iter().product::<usize>() != l.params {
                return bad(format!(
                    "shape {:?} does not hold {} params",
                    l.shape, l.params
                ));
            }
        }
        Ok(())
    }

    /// Total dense FLOPs and params of the layers.
    pub fn totals(&self) -> (f64, usize) {
        (
            self.layers.iter().map(|l| l.flops).sum(),
            self.layers.iter().map(|l| l.params).sum(),
        )
    }

    pub fn layer(&self, name: &str) -> Option<&LayerCurve> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// Merges shards computed on disjoint scan subsets of the same model with the same
    /// settings: sums and counts add, means are recomputed. `names` label the inputs in
    /// errors.
    pub fn merge(shards: &[Curves], names: &[String]) -> Result<Curves, CurvesError> {
        let Some(first) = shards.first() else {
            return Err(CurvesError::Merge {
                a: String::new(),
                b: String::new(),
                reason: "nothing to merge".into(),
            });
        };
        // Sums are weighted by scan counts: a count that is not the scans listed would weigh
        // a shard wrongly (or overflow).
        for (i, s) in shards.iter().enumerate() {
            let c = &s.calibration;
            if c.scans == 0 || c.scans != c.scan_ids.len() || c.probes == 0 {
                return Err(CurvesError::Invalid {
                    path: names
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("shard {i}")),
                    reason: format!(
                        "cannot be merged: it claims {} scans x {} probes but lists {} scan ids",
                        c.scans,
                        c.probes,
                        c.scan_ids.len()
                    ),
                });
            }
        }
        let mut out = first.clone();
        out.fidelity = None;
        for l in &mut out.layers {
            l.measured = Measured::default();
        }
        let label = |i: usize| {
            names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("shard {i}"))
        };
        for (i, s) in shards.iter().enumerate().skip(1) {
            let err = |reason: String| CurvesError::Merge {
                a: label(0),
                b: label(i),
                reason,
            };
            if s.model != first.model {
                return Err(err(format!(
                    "different models ({} {} vs {} {})",
                    first.model.name,
                    first.model.weights_sha256,
                    s.model.name,
                    s.model.weights_sha256
                )));
            }
            let (a, b) = (&first.calibration, &s.calibration);
            if a.probes != b.probes || a.ranking != b.ranking || a.seed != b.seed {
                return Err(err(
                    "different probe counts, rankings or seeds; compute the shards with the same settings".into(),
                ));
            }
            if a.distortion != b.distortion {
                return Err(err(format!(
                    "different distortions ({} vs {}); compute the shards with the same --distortion",
                    a.distortion.name(),
                    b.distortion.name()
                )));
            }
            if a.normalization != b.normalization {
                return Err(err("the shards were normalised by different output variances; compute them with `--norm-from` one shared file".into()));
            }
            if let Some(dup) = out
                .calibration
                .scan_ids
                .iter()
                .find(|id| b.scan_ids.contains(id))
            {
                return Err(err(format!("scan `{dup}` is in both shards")));
            }
            if s.layers.len() != out.layers.len() {
                return Err(err("different layer lists".into()));
            }
            for (o, l) in out.layers.iter_mut().zip(&s.layers) {
                if o.name != l.name || o.sparsity != l.sparsity || o.params != l.params {
                    return Err(err(format!(
                        "layer `{}` differs (name, params or sparsity levels)",
                        l.name
                    )));
                }
                let (Some(os), Some(ls)) = (o.sum.as_mut(), l.sum.as_ref()) else {
                    return Err(err(format!(
                        "layer `{}` carries no sums; only files with `sum` merge exactly",
                        l.name
                    )));
                };
                for g in Group::ALL {
                    for (x, y) in os.get_mut(g).iter_mut().zip(ls.get(g)) {
                        *x += y;
                    }
                }
                // FLOPs per scan: the PFN's depend on the scans; weight by scan count.
                let (na, nb) = (out.calibration.scans as f64, b.scans as f64);
                o.flops = (o.flops * na + l.flops * nb) / (na + nb).max(1.0);
            }
            out.calibration.scans += b.scans;
            out.calibration.scan_ids.extend(b.scan_ids.iter().cloned());
        }
        let count = (out.calibration.scans * out.calibration.probes).max(1) as f64;
        for l in &mut out.layers {
            if let Some(s) = &l.sum {
                for g in Group::ALL {
                    *l.distortion.get_mut(g) = s.get(g).iter().map(|v| v / count).collect();
                }
            }
        }
        Ok(out)
    }
}

/// Linear interpolation of `ys` over ascending `xs` at `x`; `None` outside `[xs[0], last]`
/// (a curve says nothing beyond the levels it was computed at).
pub fn interpolate(xs: &[f64], ys: &[f64], x: f64) -> Option<f64> {
    const EPS: f64 = 1e-12;
    let (&first, &last) = (xs.first()?, xs.last()?);
    if x < first - EPS || x > last + EPS || xs.len() != ys.len() {
        return None;
    }
    let x = x.clamp(first, last);
    let i = xs.partition_point(|&v| v < x);
    if i == 0 {
        return ys.first().copied();
    }
    let (x0, x1, y0, y1) = (xs[i - 1], xs[i], ys[i - 1], ys[i]);
    if x1 <= x0 {
        return Some(y1);
    }
    Some(y0 + (y1 - y0) * (x - x0) / (x1 - x0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_layer(measured: Measured) -> Curves {
        Curves {
            format: CURVES_FORMAT.into(),
            model: ModelInfo {
                name: "m".into(),
                weights_sha256: String::new(),
            },
            calibration: Calibration {
                scans: 1,
                probes: 1,
                scan_ids: vec![],
                ranking: Ranking::Magnitude,
                distortion: Default::default(),
                normalization: vec![],
                seed: 0,
            },
            layers: vec![LayerCurve {
                name: "conv.weight".into(),
                params: 10,
                flops: 100.0,
                shape: vec![],
                sparsity: vec![0.0, 0.25, 0.5, 1.0],
                distortion: GroupValues {
                    confidence: vec![0.0; 4],
                    locality: vec![0.0; 4],
                },
                sum: None,
                measured,
            }],
            fidelity: None,
        }
    }

    /// Measured values are interpolated onto the predicted levels, less the value at 0 and
    /// never below 0; a layer not measured from 0 to 1 is named.
    #[test]
    fn on_measured_resamples_and_offsets_the_measured_curves() {
        let c = one_layer(Measured {
            sparsity: vec![0.0, 0.5, 1.0],
            confidence: vec![0.2, 0.1, 1.2],
            locality: vec![0.0, 1.0, 3.0],
            after_statistics: true,
        });
        let m = c.on_measured().unwrap();
        let d = &m.layers[0].distortion;
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        assert!(close(&d.confidence, &[0.0, 0.0, 0.0, 1.0]), "{d:?}");
        assert!(close(&d.locality, &[0.0, 0.5, 1.0, 3.0]), "{d:?}");
        let partial = one_layer(Measured {
            sparsity: vec![0.1, 0.9],
            confidence: vec![0.1, 0.2],
            locality: vec![0.1, 0.2],
            after_statistics: false,
        });
        let e = partial.on_measured().unwrap_err();
        assert!(e.contains("conv.weight") && e.contains("0 to 1"), "{e}");
    }
}
