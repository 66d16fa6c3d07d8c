//! Anchor box decoding (OpenPCDet `ResidualCoder`) and the direction-classifier correction.
//!
//! Everything is f32 in PyTorch's operation order, one rounding per tensor op and no fused
//! multiply-add, so decoded boxes match OpenPCDet's CPU forward pass to the last bit except
//! where PyTorch's vectorised `exp` (SLEEF, ≤ 1 ulp) rounds differently from the platform's.
//!
//! Python scalars in those expressions (`period`, `DIR_OFFSET`, ...) are cast to f32 before the
//! op, as PyTorch does for a scalar operand of a float32 tensor; so e.g. the direction period is
//! `f32(2π / NUM_DIR_BINS)`, not 2π/n rounded after the arithmetic.

use rayon::prelude::*;
use thiserror::Error;

/// Why a decode could not run: the buffers do not describe matching encodings and anchors.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CoderError {
    #[error("ResidualCoder needs code_size >= 7 ([x, y, z, dx, dy, dz, heading, ...]), got {0}")]
    CodeSize(usize),
    #[error("anchors need at least 7 columns [x, y, z, dx, dy, dz, heading, ...], got {0}")]
    AnchorColumns(usize),
    #[error(
        "the anchor buffer holds {len} values, which is not a whole number of {cols}-column rows"
    )]
    RaggedAnchors { len: usize, cols: usize },
    #[error(
        "{anchors} anchors need {expected} box-regression values ({code_size} per anchor), got {got}"
    )]
    EncodingCount {
        anchors: usize,
        code_size: usize,
        expected: usize,
        got: usize,
    },
}

/// OpenPCDet's `ResidualCoder` (decode side).
///
/// Encoding columns: `[xt, yt, zt, dxt, dyt, dzt, rt, extra...]`, or with
/// `encode_angle_by_sincos` `[xt, yt, zt, dxt, dyt, dzt, cos_t, sin_t, extra...]`. Decoded box:
/// `[x, y, z, dx, dy, dz, heading, extra...]` where each extra column (e.g. velocity) is
/// `t + a`, paired with the anchor's extra columns; like Python's `zip`, only as many extras
/// as *both* have are produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResidualCoder {
    code_size: usize,
    sincos: bool,
}

impl ResidualCoder {
    /// `code_size` as in the config (`BOX_CODER_CONFIG.code_size`, default 7). With
    /// `encode_angle_by_sincos` the encodings carry one more column, as in OpenPCDet.
    pub fn new(code_size: usize, encode_angle_by_sincos: bool) -> Result<Self, CoderError> {
        if code_size < 7 {
            return Err(CoderError::CodeSize(code_size));
        }
        Ok(ResidualCoder {
            code_size: code_size + usize::from(encode_angle_by_sincos),
            sincos: encode_angle_by_sincos,
        })
    }

    /// Values per encoding (OpenPCDet's `box_coder.code_size`: the channels per anchor of
    /// `conv_box`).
    pub fn code_size(&self) -> usize {
        self.code_size
    }

    pub fn encode_angle_by_sincos(&self) -> bool {
        self.sincos
    }

    /// Columns of a decoded box for anchors with `anchor_cols` columns.
    pub fn box_cols(&self, anchor_cols: usize) -> usize {
        let base_t = if self.sincos { 8 } else { 7 };
        7 + (self.code_size - base_t).min(anchor_cols.saturating_sub(7))
    }

    /// Decodes one box: `enc` has [`Self::code_size`] values, `anchor` at least 7, `out`
    /// [`Self::box_cols`]`(anchor.len())`.
    ///
    /// # Panics
    /// If the slice lengths are not as above (a programming error; [`Self::decode`] checks
    /// buffers that come from files).
    pub fn decode_one(&self, enc: &[f32], anchor: &[f32], out: &mut [f32]) {
        assert_eq!(enc.len(), self.code_size, "encoding length");
        assert!(anchor.len() >= 7, "anchor length");
        assert_eq!(out.len(), self.box_cols(anchor.len()), "output length");
        let (xa, ya, za, dxa, dya, dza, ra) = (
            anchor[0], anchor[1], anchor[2], anchor[3], anchor[4], anchor[5], anchor[6],
        );
        let diagonal = (dxa * dxa + dya * dya).sqrt();
        out[0] = enc[0] * diagonal + xa;
        out[1] = enc[1] * diagonal + ya;
        out[2] = enc[2] * dza + za;
        out[3] = enc[3].exp() * dxa;
        out[4] = enc[4].exp() * dya;
        out[5] = enc[5].exp() * dza;
        let first_extra = if self.sincos {
            let rg_cos = enc[6] + ra.cos();
            let rg_sin = enc[7] + ra.sin();
            out[6] = rg_sin.atan2(rg_cos);
            8
        } else {
            out[6] = enc[6] + ra;
            7
        };
        for (k, o) in out[7..].iter_mut().enumerate() {
            *o = enc[first_extra + k] + anchor[7 + k];
        }
    }

    /// Decodes `n` boxes: `encodings` is `n × code_size`, `anchors` is `n × anchor_cols`
    /// (row-major). Returns `n × box_cols(anchor_cols)`, computed in parallel.
    pub fn decode(
        &self,
        encodings: &[f32],
        anchors: &[f32],
        anchor_cols: usize,
    ) -> Result<Vec<f32>, CoderError> {
        if anchor_cols < 7 {
            return Err(CoderError::AnchorColumns(anchor_cols));
        }
        if !anchors.len().is_multiple_of(anchor_cols) {
            return Err(CoderError::RaggedAnchors {
                len: anchors.len(),
                cols: anchor_cols,
            });
        }
        let n = anchors.len() / anchor_cols;
        let expected = n * self.code_size;
        if encodings.len() != expected {
            return Err(CoderError::EncodingCount {
                anchors: n,
                code_size: self.code_size,
                expected,
                got: encodings.len(),
            });
        }
        let out_cols = self.box_cols(anchor_cols);
        let mut out = vec![0f32; n * out_cols];
        const ROWS: usize = 4096;
        out.par_chunks_mut(ROWS * out_cols)
            .zip(encodings.par_chunks(ROWS * self.code_size))
            .zip(anchors.par_chunks(ROWS * anchor_cols))
            .for_each(|((o, e), a)| {
                for ((o, e), a) in o
                    .chunks_exact_mut(out_cols)
                    .zip(e.chunks_exact(self.code_size))
                    .zip(a.chunks_exact(anchor_cols))
                {
                    self.decode_one(e, a, o);
                }
            });
        Ok(out)
    }
}

/// OpenPCDet `common_utils.limit_period`: `val − floor(val / period + offset) · period`, f32.
///
/// Maps into `[−offset·period, (1 − offset)·period)` mathematically; in f32 the upper end can
/// be reached: a tiny negative `val` with offset 0 gives `val + period`, which rounds to
/// exactly `period`.
pub fn limit_period(val: f32, offset: f32, period: f32) -> f32 {
    val - (val / period + offset).floor() * period
}

/// Index of the largest logit as `torch.max(dim=-1)` returns it: the first maximum, and a NaN
/// beats any number. 0 for an empty slice.
pub fn argmax_first(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate().skip(1) {
        let b = logits[best];
        if !b.is_nan() && (v > b || v.is_nan()) {
            best = i;
        }
    }
    best
}

/// The anchor head's direction classifier settings (`DIR_OFFSET`, `DIR_LIMIT_OFFSET`,
/// `NUM_DIR_BINS`) and the heading correction OpenPCDet applies after decoding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DirClassifier {
    pub offset: f32,
    pub limit_offset: f32,
    pub num_bins: usize,
}

impl DirClassifier {
    /// KITTI PointPillars / SECOND: offset 0.78539, limit offset 0, 2 bins. The offset is the
    /// config's literal, deliberately not `FRAC_PI_4` (they differ by 4e-6).
    #[allow(clippy::approx_constant)]
    pub const KITTI_POINTPILLARS: DirClassifier = DirClassifier {
        offset: 0.78539,
        limit_offset: 0.0,
        num_bins: 2,
    };

    /// `f32(2π / num_bins)`: OpenPCDet computes the period in double and PyTorch casts it to
    /// f32 when it meets the f32 tensor. NaN for 0 bins.
    pub fn period(&self) -> f32 {
        (2.0 * std::f64::consts::PI / self.num_bins as f64) as f32
    }

    /// Corrected heading for a decoded heading `rg` and direction bin `label`:
    /// `limit_period(rg − offset, limit_offset, period) + offset + period · label`,
    /// evaluated left to right in f32.
    pub fn correct(&self, rg: f32, label: usize) -> f32 {
        let period = self.period();
        let dir_rot = limit_period(rg - self.offset, self.limit_offset, period);
        dir_rot + self.offset + period * label as f32
    }

    /// [`Self::correct`] with the label taken from the direction logits (first maximum).
    pub fn apply(&self, rg: f32, dir_logits: &[f32]) -> f32 {
        self.correct(rg, argmax_first(dir_logits))
    }
}
