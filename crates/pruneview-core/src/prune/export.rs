//! Exports of a chosen allocation: masks, pruned weights and a per-layer CSV report, in files
//! a PyTorch user can load without pruneview (DESIGN.md, "File formats").
//!
//! - **Masks** (`write_masks`): safetensors, one U8 tensor per pruned layer (1 kept, 0
//!   pruned) of the weight's shape, so `w * mask` in PyTorch or NumPy reproduces the pruned
//!   weights. `__metadata__` carries the allocation JSON and the source weights' sha256, so
//!   a mask file says which weights and which allocation it belongs to.
//! - **Pruned weights** (`write_pruned`): the input file with the pruned elements set to
//!   zero in the tensor's own dtype and *every other byte unchanged*: same keys, same order,
//!   same dtypes (int64 `num_batches_tracked` and 0-d tensors included), same `__metadata__`
//!   (so `pruneview.config` still makes the file self-contained) plus the allocation. A dense
//!   tensor with zeros is not faster by itself; it is a file to evaluate or fine-tune.
//! - **Report** (`write_csv`): one row per layer, for spreadsheets and papers.
//! - **Masks in** (`read_masks`, `apply_masks`): a masks file read back for a detector, with
//!   every tensor checked (U8 or BOOL, only 0 and 1, a prunable weight of this model, the
//!   weight's shape), so a wrong file is refused instead of silently pruning the wrong values.
//! - **Recovered weights** (`write_recovered`): a detector's current parameters (weights,
//!   biases, BatchNorm parameters and buffers, as recovery leaves them) in the layout of the
//!   source file: same keys, order, dtypes and shapes, pruned weights exactly zero, every
//!   other tensor copied byte for byte, and `pruneview.config` so the file loads by itself.
//!
//! Masks follow `rank`: sparsity `s` prunes the `floor(s * n)` lowest-ranked weights, ties by
//! flat index, so the same weights and allocation always give the same masks. Files are
//! written with a deterministic header (metadata keys sorted), so the same inputs give the
//! same bytes, and every write is atomic and refuses to replace an input
//! ([`crate::io::write_atomic`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use safetensors::tensor::{Dtype, TensorInfo};
use sha2::{Digest, Sha256};

use super::allocation_file::Allocation;
use super::curves::{Curves, interpolate};
use super::rank;
use crate::detect::Detector;
use crate::io::{WriteError, write_atomic};
use crate::model::config::CONFIG_METADATA_KEY;
use crate::model::weights::{from_file_layout, is_spconv1_of, to_f32, to_file_layout};
use crate::model::{Weights, WeightsError};
use crate::nn::{NnError, Tensor};

/// `__metadata__` key holding the allocation JSON (masks and pruned weights).
pub const META_ALLOCATION: &str = "pruneview.allocation";
/// `__metadata__` key holding the sha256 (hex) of the weights the masks were computed from.
pub const META_SOURCE_SHA256: &str = "source_sha256";

/// The file names in an output folder, shared by `pruneview prune` and the app's export.
pub const MASKS_FILE: &str = "masks.safetensors";
pub const PRUNED_FILE: &str = "pruned.safetensors";
pub const ALLOCATION_FILE: &str = "allocation.json";
pub const CSV_FILE: &str = "report.csv";
pub const CURVES_FILE: &str = "curves.json";

/// Where the prune order of each layer comes from.
#[derive(Clone, Copy, Debug)]
pub enum Orders<'a> {
    /// `|w|` ascending, ties by index, computed from the weights (f16/bf16 read as f32).
    Magnitude,
    /// Orders computed elsewhere (e.g. the saliency ranking from the curve probes), keyed by
    /// parameter name: each a permutation of `0..n`, lowest-ranked (pruned first) first.
    Given(&'a HashMap<String, Vec<u32>>),
}

/// The keep-mask of one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerMask {
    /// The parameter's state-dict name.
    pub name: String,
    /// The weight's shape (the mask has the same).
    pub shape: Vec<usize>,
    /// One byte per weight, row-major: 1 kept, 0 pruned.
    pub mask: Vec<u8>,
    /// Number of zeros in `mask`: `floor(s * n)`.
    pub pruned: usize,
}

impl LayerMask {
    /// Number of weights in the layer.
    pub fn params(&self) -> usize {
        self.mask.len()
    }

    /// Number of weights the mask keeps.
    pub fn kept(&self) -> usize {
        self.mask.len() - self.pruned
    }

    /// Fraction of the layer's weights pruned.
    pub fn actual_sparsity(&self) -> f64 {
        if self.mask.is_empty() {
            0.0
        } else {
            self.pruned as f64 / self.mask.len() as f64
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "{path}: the allocation's layer `{key}` is not in the weights (was the allocation made for another model?)"
    )]
    MissingLayer { path: PathBuf, key: String },
    #[error(
        "{path}: layer `{key}` has dtype {dtype}; only F32, F16 and BF16 tensors can be pruned"
    )]
    NotFloat {
        path: PathBuf,
        key: String,
        dtype: String,
    },
    #[error("the allocation lists layer `{key}` more than once")]
    DuplicateLayer { key: String },
    #[error(
        "{path}: the allocation's layer `{key}` is a {shape:?} tensor, not a conv or linear weight (BatchNorm parameters and biases are not pruned)"
    )]
    NotPrunable {
        path: PathBuf,
        key: String,
        shape: Vec<usize>,
    },
    #[error("the allocation has no layers: nothing to mask")]
    EmptyAllocation,
    #[error(
        "the curves are of weights {curves_sha}, the allocation of {alloc_sha}: their FLOPs and distortions would not describe these masks"
    )]
    CurvesOfAnotherModel {
        curves_sha: String,
        alloc_sha: String,
    },
    #[error("prune order of layer `{key}`: {reason}")]
    BadOrder { key: String, reason: String },
    #[error("mask of layer `{key}`: {reason}")]
    BadMask { key: String, reason: String },
    #[error(
        "{given} masks were given for a model with {units} units (expected one per unit, in the model's order)"
    )]
    MaskCount { given: usize, units: usize },
    #[error("{path}: mask `{key}`: {reason}")]
    BadMasksFile {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error(
        "{path}: holds no mask for any weight of this model (expected U8 or BOOL tensors named after its weights, e.g. `{example}`)"
    )]
    NoMasks { path: PathBuf, example: String },
    #[error(
        "{path}: the detector's parameter `{key}` is not in this file (is it the model's source weights?)"
    )]
    MissingParameter { path: PathBuf, key: String },
    #[error(
        "{path}: parameter `{key}` has dtype {dtype}; recovered values can only be written to F32, F16 or BF16 tensors"
    )]
    ParameterNotFloat {
        path: PathBuf,
        key: String,
        dtype: String,
    },
    #[error("{path}: parameter `{key}`: {reason}")]
    BadParameter {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Nn(#[from] NnError),
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// A layer of the allocation, checked against the weights.
struct LayerRef<'a> {
    name: &'a str,
    sparsity: f64,
    shape: &'a [usize],
}

/// Checks that every layer of `alloc` is a float tensor of `weights` (and listed once);
/// returns them in allocation order.
fn alloc_layers<'a>(
    alloc: &'a Allocation,
    weights: &'a Weights,
) -> Result<Vec<LayerRef<'a>>, ExportError> {
    if alloc.layers.is_empty() {
        return Err(ExportError::EmptyAllocation);
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(alloc.layers.len());
    for l in &alloc.layers {
        if !seen.insert(l.name.as_str()) {
            return Err(ExportError::DuplicateLayer {
                key: l.name.clone(),
            });
        }
        let Some((dtype, shape, _)) = weights.raw(&l.name) else {
            return Err(ExportError::MissingLayer {
                path: weights.path().to_path_buf(),
                key: l.name.clone(),
            });
        };
        if !is_float(dtype) {
            return Err(ExportError::NotFloat {
                path: weights.path().to_path_buf(),
                key: l.name.clone(),
                dtype: format!("{dtype:?}"),
            });
        }
        // Prunable weights are conv kernels and linear matrices: at least two dimensions.
        if shape.len() < 2 {
            return Err(ExportError::NotPrunable {
                path: weights.path().to_path_buf(),
                key: l.name.clone(),
                shape: shape.to_vec(),
            });
        }
        out.push(LayerRef {
            name: &l.name,
            sparsity: l.sparsity,
            shape,
        });
    }
    Ok(out)
}

fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16)
}

/// The prune order of layer `key` (`n` weights): computed by magnitude, or the given one
/// after checking that it is a permutation of `0..n`.
fn layer_order(
    weights: &Weights,
    key: &str,
    n: usize,
    orders: Orders<'_>,
) -> Result<Vec<u32>, ExportError> {
    match orders {
        Orders::Magnitude => {
            let not_float = || ExportError::NotFloat {
                path: weights.path().to_path_buf(),
                key: key.to_string(),
                dtype: "unknown".into(),
            };
            let (dtype, _, bytes) = weights.raw(key).ok_or_else(not_float)?;
            let values = to_f32(dtype, bytes).ok_or_else(not_float)?;
            Ok(rank::magnitude_order(&values))
        }
        Orders::Given(map) => {
            let bad = |reason: String| ExportError::BadOrder {
                key: key.to_string(),
                reason,
            };
            let order = map
                .get(key)
                .ok_or_else(|| bad("no order was given for this layer".into()))?;
            if order.len() != n {
                return Err(bad(format!(
                    "has {} entries, the layer has {n} weights",
                    order.len()
                )));
            }
            let mut seen = vec![false; n];
            for &i in order {
                match seen.get_mut(i as usize) {
                    None => return Err(bad(format!("index {i} is out of range 0..{n}"))),
                    Some(true) => return Err(bad(format!("index {i} appears twice"))),
                    Some(s) => *s = true,
                }
            }
            Ok(order.clone())
        }
    }
}

/// The masks of every layer of `alloc`, in allocation order. Each layer must be a float
/// tensor of `weights`; sparsity `s` prunes the first `floor(s * n)` weights of its order.
pub fn build_masks(
    alloc: &Allocation,
    weights: &Weights,
    orders: Orders<'_>,
) -> Result<Vec<LayerMask>, ExportError> {
    // Validate every layer first so the error is the first bad layer, not a random one.
    let layers = alloc_layers(alloc, weights)?;
    layers
        .par_iter()
        .map(|l| {
            let n = l.shape.iter().product();
            let order = layer_order(weights, l.name, n, orders)?;
            Ok(LayerMask {
                name: l.name.to_string(),
                shape: l.shape.to_vec(),
                pruned: rank::pruned_count(l.sparsity, n),
                mask: rank::mask(&order, l.sparsity),
            })
        })
        .collect()
}

/// Checks that `masks` are exactly the allocation's layers (no missing, extra or repeated
/// mask) and are internally consistent; returns them by name.
fn masks_by_name<'m>(
    alloc: &Allocation,
    masks: &'m [LayerMask],
) -> Result<HashMap<&'m str, &'m LayerMask>, ExportError> {
    let mut by_name = HashMap::with_capacity(masks.len());
    for m in masks {
        let bad = |reason: String| ExportError::BadMask {
            key: m.name.clone(),
            reason,
        };
        if by_name.insert(m.name.as_str(), m).is_some() {
            return Err(bad("given more than once".into()));
        }
        if alloc.sparsity_of(&m.name).is_none() {
            return Err(bad("the layer is not in the allocation".into()));
        }
        let n: usize = m.shape.iter().product();
        if m.mask.len() != n {
            return Err(bad(format!(
                "has {} entries for shape {:?} ({n} weights)",
                m.mask.len(),
                m.shape
            )));
        }
        let zeros = m.mask.iter().filter(|&&v| v == 0).count();
        if zeros != m.pruned || m.mask.iter().any(|&v| v > 1) {
            return Err(bad(format!(
                "must hold only 0 and 1 with {} zeros (found {zeros})",
                m.pruned
            )));
        }
    }
    if let Some(l) = alloc
        .layers
        .iter()
        .find(|l| !by_name.contains_key(l.name.as_str()))
    {
        return Err(ExportError::BadMask {
            key: l.name.clone(),
            reason: "the allocation has this layer but no mask was given".into(),
        });
    }
    Ok(by_name)
}

/// A tensor to serialise: raw little-endian bytes, borrowed from the input or owned.
struct RawTensor<'a> {
    name: &'a str,
    dtype: Dtype,
    shape: &'a [usize],
    bytes: std::borrow::Cow<'a, [u8]>,
}

/// Serialises `tensors` in the given order (unlike `safetensors::serialize`, which sorts by
/// dtype and name) with `metadata` in sorted key order, so output bytes are deterministic
/// and a copied file keeps its layout. Header padded with spaces to 8 bytes, as the format's
/// reference writer does.
fn encode_safetensors(tensors: &[RawTensor<'_>], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let meta: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        header.insert("__metadata__".into(), serde_json::Value::Object(meta));
    }
    let mut offset = 0;
    for t in tensors {
        let info = TensorInfo {
            dtype: t.dtype,
            shape: t.shape.to_vec(),
            data_offsets: (offset, offset + t.bytes.len()),
        };
        offset += t.bytes.len();
        // TensorInfo is plain data (a dtype name and integers): serialising cannot fail.
        let value = serde_json::to_value(&info).unwrap_or(serde_json::Value::Null);
        header.insert(t.name.to_string(), value);
    }
    let mut head = serde_json::Value::Object(header).to_string().into_bytes();
    head.resize(head.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + head.len() + offset);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    for t in tensors {
        out.extend_from_slice(&t.bytes);
    }
    out
}

/// Writes the masks as a safetensors file: key = parameter name, U8 (1 kept, 0 pruned), the
/// weight's shape, in allocation order; `__metadata__` holds `pruneview.allocation` (the
/// allocation JSON) and `source_sha256` (of the weights file, see [`sha256_file`]).
pub fn write_masks(
    path: &Path,
    masks: &[LayerMask],
    alloc: &Allocation,
    source_sha256: &str,
    inputs: &[&Path],
) -> Result<(), ExportError> {
    let by_name = masks_by_name(alloc, masks)?;
    let tensors: Vec<RawTensor<'_>> = alloc
        .layers
        .iter()
        .filter_map(|l| by_name.get(l.name.as_str()))
        .map(|m| RawTensor {
            name: &m.name,
            dtype: Dtype::U8,
            shape: &m.shape,
            bytes: Cow::Borrowed(&m.mask),
        })
        .collect();
    let metadata = BTreeMap::from([
        (META_ALLOCATION.to_string(), alloc.to_json()),
        (META_SOURCE_SHA256.to_string(), source_sha256.to_string()),
    ]);
    write_atomic(path, &encode_safetensors(&tensors, &metadata), inputs)?;
    Ok(())
}

/// Element size in bytes of the float dtypes masks apply to.
fn float_size(dtype: Dtype) -> Option<usize> {
    match dtype {
        Dtype::F32 => Some(4),
        Dtype::F16 | Dtype::BF16 => Some(2),
        _ => None,
    }
}

/// Writes `weights` with the masks applied: every key of the input in the input's order;
/// in masked tensors the pruned elements become zero of the tensor's own dtype (all-zero
/// bytes: +0.0 in f32, f16 and bf16) and the kept ones keep their exact bits; every other
/// tensor is copied byte for byte. The input's `__metadata__` is kept and
/// `pruneview.allocation` is added (replacing an older one).
pub fn write_pruned(
    path: &Path,
    weights: &Weights,
    masks: &[LayerMask],
    alloc: &Allocation,
    inputs: &[&Path],
) -> Result<(), ExportError> {
    let by_name = masks_by_name(alloc, masks)?;
    for m in masks {
        let Some((dtype, shape, _)) = weights.raw(&m.name) else {
            return Err(ExportError::MissingLayer {
                path: weights.path().to_path_buf(),
                key: m.name.clone(),
            });
        };
        if float_size(dtype).is_none() {
            return Err(ExportError::NotFloat {
                path: weights.path().to_path_buf(),
                key: m.name.clone(),
                dtype: format!("{dtype:?}"),
            });
        }
        if shape != m.shape.as_slice() {
            return Err(ExportError::BadMask {
                key: m.name.clone(),
                reason: format!(
                    "has shape {:?} but {} holds {shape:?}",
                    m.shape,
                    weights.path().display()
                ),
            });
        }
    }
    let keys = file_order(weights);
    let mut tensors = Vec::with_capacity(keys.len());
    for key in &keys {
        let Some((dtype, shape, bytes)) = weights.raw(key) else {
            continue;
        };
        let bytes = match (by_name.get(key.as_str()), float_size(dtype)) {
            (Some(m), Some(size)) => {
                let mut b = bytes.to_vec();
                for (chunk, &keep) in b.chunks_exact_mut(size).zip(&m.mask) {
                    if keep == 0 {
                        chunk.fill(0);
                    }
                }
                Cow::Owned(b)
            }
            _ => Cow::Borrowed(bytes),
        };
        tensors.push(RawTensor {
            name: key,
            dtype,
            shape,
            bytes,
        });
    }
    let mut metadata = weights.metadata().clone();
    metadata.insert(META_ALLOCATION.to_string(), alloc.to_json());
    write_atomic(path, &encode_safetensors(&tensors, &metadata), inputs)?;
    Ok(())
}

/// The keys of `weights` in the file's order, which is the order of the tensors' bytes:
/// every raw slice borrows the one memory map, so slice addresses order them. Empty tensors
/// sharing an offset keep name order (`keys()` is sorted and the sort is stable).
fn file_order(weights: &Weights) -> Vec<String> {
    let mut keys = weights.keys();
    keys.sort_by_key(|k| weights.raw(k).map_or(0, |(_, _, b)| b.as_ptr() as usize));
    keys
}

/// What a key that is not a unit's weight is, for the refusal message.
fn not_prunable_reason(det: &Detector, key: &str) -> String {
    let what = det.units().into_iter().find_map(|u| {
        if key == format!("{}.bias", u.prefix) {
            return Some("a bias");
        }
        let bn = u.bn.as_ref()?;
        [
            "weight",
            "bias",
            "running_mean",
            "running_var",
            "num_batches_tracked",
        ]
        .iter()
        .any(|p| key == format!("{}.{p}", bn.prefix))
        .then_some("a BatchNorm parameter")
    });
    let example = det
        .units()
        .first()
        .map(|u| u.weight_name())
        .unwrap_or_default();
    match what {
        Some(what) => format!(
            "is {what}, not a prunable weight of this model (masks are for its conv, transposed-conv and linear weights, such as `{example}`)"
        ),
        None => format!(
            "is not a prunable weight of this model (it has no conv, transposed-conv or linear weight of that name; its weights are named like `{example}`: was the mask made for another model?)"
        ),
    }
}

/// Reads a masks file (as written by [`write_masks`]) for `det`: per unit in
/// [`Detector::units`] order, the U8 0/1 mask of its weight, or `None` when the file has no
/// mask for it.
///
/// Every tensor of the file is checked, and the first bad one (in file order) is refused with
/// an error naming the file and the key: its dtype must be U8 or BOOL (so a float file, e.g.
/// weights given as masks, is refused rather than read byte by byte), it must be the weight
/// of a unit of this model (not a bias, a BatchNorm parameter or an unknown name), of the
/// weight's shape, holding only 0 (pruned) and 1 (kept). A file with no mask at all is an
/// error too.
pub fn read_masks(path: &Path, det: &Detector) -> Result<Vec<Option<Vec<u8>>>, ExportError> {
    let file = Weights::open(path)?;
    let units = det.units();
    let index: HashMap<String, usize> = units
        .iter()
        .enumerate()
        .map(|(i, u)| (u.weight_name(), i))
        .collect();
    let bad = |key: &str, reason: String| ExportError::BadMasksFile {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    let keys = file_order(&file);
    // The dtype first, for the whole file: a weights file given as masks is named as such
    // (by its first float tensor) whatever its first tensor is.
    let not_masks: Vec<(&String, Dtype)> = keys
        .iter()
        .filter_map(|k| file.raw(k).map(|(d, _, _)| (k, d)))
        .filter(|&(_, d)| !matches!(d, Dtype::U8 | Dtype::BOOL))
        .collect();
    let first_bad = not_masks
        .iter()
        .find(|&&(_, d)| is_float(d))
        .or(not_masks.first());
    if let Some(&(key, dtype)) = first_bad {
        let hint = if is_float(dtype) {
            " (a float tensor: pass a masks file, not a weights file; masks saved as float must be converted to uint8 or bool)"
        } else {
            ""
        };
        return Err(bad(
            key,
            format!("has dtype {dtype:?}; masks must be U8 or BOOL (0 pruned, 1 kept){hint}"),
        ));
    }
    let mut out: Vec<Option<Vec<u8>>> = vec![None; units.len()];
    for key in keys {
        let Some((_, shape, bytes)) = file.raw(&key) else {
            continue;
        };
        let Some(&i) = index.get(&key) else {
            return Err(bad(&key, not_prunable_reason(det, &key)));
        };
        let want = units[i].weight.shape.as_slice();
        if shape != want && !is_spconv1_of(shape, want) {
            return Err(bad(
                &key,
                format!("has shape {shape:?}; the model's weight has shape {want:?}"),
            ));
        }
        if let Some((at, &v)) = bytes.iter().enumerate().find(|&(_, &v)| v > 1) {
            return Err(bad(
                &key,
                format!("holds {v} at flat index {at}; mask values must be 0 (pruned) or 1 (kept)"),
            ));
        }
        // Masks of a spconv 1.x weights file are in its layout; the detector holds 2.3's.
        out[i] = Some(from_file_layout(bytes, want, shape));
    }
    if out.iter().all(Option::is_none) {
        return Err(ExportError::NoMasks {
            path: path.to_path_buf(),
            example: units.first().map(|u| u.weight_name()).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Checks that `masks` has one entry per unit of `det` and that each mask has one value per
/// weight of its unit.
fn check_unit_masks(det: &Detector, masks: &[Option<Vec<u8>>]) -> Result<(), ExportError> {
    let units = det.units();
    if masks.len() != units.len() {
        return Err(ExportError::MaskCount {
            given: masks.len(),
            units: units.len(),
        });
    }
    for (u, m) in units.iter().zip(masks) {
        if let Some(m) = m
            && m.len() != u.weight.numel()
        {
            return Err(ExportError::BadMask {
                key: u.weight_name(),
                reason: format!(
                    "has {} entries; the weight {:?} has {}",
                    m.len(),
                    u.weight.shape,
                    u.weight.numel()
                ),
            });
        }
    }
    Ok(())
}

/// Multiplies each masked unit's weight by its mask (pruned weights become exactly 0.0) and
/// refolds the unit ([`crate::detect::layers::Unit::set_weight`]); returns how many units
/// were masked. `masks` is in [`Detector::units`] order, as [`read_masks`] returns it.
pub fn apply_masks(det: &mut Detector, masks: &[Option<Vec<u8>>]) -> Result<usize, ExportError> {
    check_unit_masks(det, masks)?;
    let mut applied = 0;
    for (unit, mask) in det.units_mut().into_iter().zip(masks) {
        let Some(mask) = mask else {
            continue;
        };
        let data: Vec<f32> = unit
            .weight
            .data
            .iter()
            .zip(mask)
            .map(|(&w, &m)| if m == 0 { 0.0 } else { w })
            .collect();
        let shape = unit.weight.shape.clone();
        unit.set_weight(Tensor::from_vec(&shape, data))?;
        applied += 1;
    }
    Ok(applied)
}

/// One parameter of a unit to write: its values, shape and (weights only) mask.
struct Param<'a> {
    values: Cow<'a, [f32]>,
    shape: Vec<usize>,
    mask: Option<Cow<'a, [u8]>>,
}

impl Param<'_> {
    /// The parameter in the element order of a file that stores it as `file_shape`.
    fn in_file_layout(&mut self, file_shape: &[usize]) {
        if is_spconv1_of(file_shape, &self.shape) {
            self.values = Cow::Owned(to_file_layout(&self.values, &self.shape, file_shape));
            self.mask =
                (self.mask.take()).map(|m| Cow::Owned(to_file_layout(&m, &self.shape, file_shape)));
            self.shape = file_shape.to_vec();
        }
    }
}

/// Every parameter of `det`'s units with its state-dict name, in the model's order:
/// `{prefix}.weight` (with its mask), `{prefix}.bias`, and the BatchNorm's `weight`, `bias`,
/// `running_mean` and `running_var`.
fn unit_params<'a>(
    det: &'a Detector,
    masks: &'a [Option<Vec<u8>>],
) -> Result<Vec<(String, Param<'a>)>, ExportError> {
    let vector = |v: &'a [f32]| Param {
        values: Cow::Borrowed(v),
        shape: vec![v.len()],
        mask: None,
    };
    let mut params = Vec::new();
    for (u, m) in det.units().into_iter().zip(masks) {
        let weight = Param {
            values: Cow::Borrowed(&u.weight.data),
            shape: u.weight.shape.clone(),
            mask: m.as_deref().map(Cow::Borrowed),
        };
        params.push((u.weight_name(), weight));
        if let Some(b) = &u.bias {
            params.push((format!("{}.bias", u.prefix), vector(b)));
        }
        if let Some(bn) = &u.bn {
            let b = &bn.bn;
            for (name, v) in [
                ("weight", &b.gamma),
                ("bias", &b.beta),
                ("running_mean", &b.mean),
                ("running_var", &b.var),
            ] {
                params.push((format!("{}.{name}", bn.prefix), vector(v)));
            }
        }
    }
    let mut seen = HashSet::with_capacity(params.len());
    if let Some((key, _)) = params.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        return Err(ExportError::BadMask {
            key: key.clone(),
            reason: "the parameter belongs to two units of the model".into(),
        });
    }
    Ok(params)
}

/// Encodes `p`'s values as `dtype` (f32 exact; f16 and bf16 rounded to nearest, ties to
/// even), writing all-zero bytes (+0.0) where the mask prunes. Errors name `key` in `path`.
fn encode_param(
    path: &Path,
    key: &str,
    dtype: Dtype,
    p: &Param<'_>,
) -> Result<Vec<u8>, ExportError> {
    let bad = |reason: String| ExportError::BadParameter {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    if let Some(i) = p.values.iter().position(|v| !v.is_finite()) {
        return Err(bad(format!(
            "the detector holds {} at flat index {i}; only finite values can be written",
            p.values[i]
        )));
    }
    if let Some(m) = p.mask.as_deref()
        && let Some(i) = p
            .values
            .iter()
            .zip(m)
            .position(|(&v, &k)| k == 0 && v != 0.0)
    {
        return Err(bad(format!(
            "holds {} at flat index {i}, which the mask prunes; pruned weights must stay exactly 0 (a bug in recovery)",
            p.values[i]
        )));
    }
    let kept = |i: usize| p.mask.as_deref().is_none_or(|m| m[i] != 0);
    let out_of_range = |i: usize| {
        bad(format!(
            "{} at flat index {i} is out of the range of {dtype:?}",
            p.values[i]
        ))
    };
    let mut out = Vec::with_capacity(p.values.len() * float_size(dtype).unwrap_or(4));
    for (i, &v) in p.values.iter().enumerate() {
        let v = if kept(i) { v } else { 0.0 };
        match dtype {
            Dtype::F32 => out.extend_from_slice(&v.to_le_bytes()),
            Dtype::F16 => {
                let h = half::f16::from_f32(v);
                if !h.is_finite() {
                    return Err(out_of_range(i));
                }
                out.extend_from_slice(&h.to_le_bytes());
            }
            Dtype::BF16 => {
                let h = half::bf16::from_f32(v);
                if !h.is_finite() {
                    return Err(out_of_range(i));
                }
                out.extend_from_slice(&h.to_le_bytes());
            }
            other => {
                return Err(ExportError::ParameterNotFloat {
                    path: path.to_path_buf(),
                    key: key.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        }
    }
    Ok(out)
}

/// Writes `det`'s current parameters in the layout of `weights` (the source file): every key
/// of the source in the source's order, same dtypes and shapes. The keys that are a unit's
/// parameters (`{prefix}.weight`, `{prefix}.bias`, and its BatchNorm's `{bn}.weight`,
/// `{bn}.bias`, `{bn}.running_mean`, `{bn}.running_var`) hold `det`'s values converted to the
/// key's dtype (f32 exact; f16 and bf16 rounded to nearest); every other key (e.g.
/// `num_batches_tracked`, `global_step`, tensors the model does not read) is copied byte for
/// byte. Where `masks[i]` (in [`Detector::units`] order) is 0 the weight is written as +0.0,
/// and a nonzero value there is an error: recovery must not revive pruned weights.
///
/// `__metadata__` is the source's, plus `pruneview.config` (the detector's config, so the
/// file loads without `--config`; an existing entry is kept), plus every entry of
/// `extra_metadata` (e.g. `pruneview.allocation`, `pruneview.recovery`), which replaces a
/// source entry of the same name. The write is atomic and refuses to replace any of `inputs`.
pub fn write_recovered(
    path: &Path,
    weights: &Weights,
    det: &Detector,
    masks: &[Option<Vec<u8>>],
    extra_metadata: &BTreeMap<String, String>,
    inputs: &[&Path],
) -> Result<(), ExportError> {
    check_unit_masks(det, masks)?;
    let mut params = unit_params(det, masks)?;
    let source = weights.path();
    // Every parameter must be in the source, as a float tensor of the parameter's shape (or
    // a sparse-conv weight in spconv 1.x's layout, written back in it); checked in the
    // model's order so the error is the first bad parameter.
    for (key, p) in &mut params {
        let Some((dtype, shape, _)) = weights.raw(key) else {
            return Err(ExportError::MissingParameter {
                path: source.to_path_buf(),
                key: key.clone(),
            });
        };
        if float_size(dtype).is_none() {
            return Err(ExportError::ParameterNotFloat {
                path: source.to_path_buf(),
                key: key.clone(),
                dtype: format!("{dtype:?}"),
            });
        }
        p.in_file_layout(shape);
        if shape != p.shape.as_slice() {
            return Err(ExportError::BadParameter {
                path: source.to_path_buf(),
                key: key.clone(),
                reason: format!(
                    "has shape {shape:?} but the detector's parameter has shape {:?}",
                    p.shape
                ),
            });
        }
    }
    let params: HashMap<&str, &Param<'_>> = params.iter().map(|(k, p)| (k.as_str(), p)).collect();
    let keys = file_order(weights);
    let encoded: Vec<Option<Vec<u8>>> = keys
        .par_iter()
        .map(|key| match (params.get(key.as_str()), weights.raw(key)) {
            (Some(p), Some((dtype, _, _))) => encode_param(source, key, dtype, p).map(Some),
            _ => Ok(None),
        })
        .collect::<Result<_, _>>()?;
    let mut tensors = Vec::with_capacity(keys.len());
    for (key, enc) in keys.iter().zip(encoded) {
        let Some((dtype, shape, bytes)) = weights.raw(key) else {
            continue;
        };
        tensors.push(RawTensor {
            name: key,
            dtype,
            shape,
            bytes: match enc {
                Some(b) => Cow::Owned(b),
                None => Cow::Borrowed(bytes),
            },
        });
    }
    let mut metadata = weights.metadata().clone();
    if !det.config.raw.is_null() {
        metadata
            .entry(CONFIG_METADATA_KEY.to_string())
            .or_insert_with(|| det.config.to_json());
    }
    metadata.extend(extra_metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
    write_atomic(path, &encode_safetensors(&tensors, &metadata), inputs)?;
    Ok(())
}

/// Shortest round-trip decimal, in exponent form for very small or large magnitudes.
fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if v != 0.0 && !(1e-4..1e15).contains(&a) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Header of the CSV report.
pub const CSV_HEADER: &str =
    "name,shape,params,flops_dense,sparsity,pruned,params_kept,flops_kept,predicted_distortion";

/// The CSV report as text: a header row, then one row per layer in allocation order.
/// `flops_dense` and `flops_kept` (`(1 - s) * flops`, as the allocators count it) come from
/// `curves` and are empty without them; `predicted_distortion` is the layer's combined
/// curve (the allocation's lambdas) interpolated at its sparsity, empty when the curves do
/// not cover the layer or that sparsity.
pub fn csv_report(
    alloc: &Allocation,
    masks: &[LayerMask],
    curves: Option<&Curves>,
) -> Result<String, ExportError> {
    let by_name = masks_by_name(alloc, masks)?;
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for l in &alloc.layers {
        let Some(m) = by_name.get(l.name.as_str()) else {
            continue;
        };
        let s = l.sparsity;
        let curve = curves.and_then(|c| c.layer(&l.name));
        let flops_dense = curve.map(|c| c.flops);
        let flops_kept = flops_dense.map(|f| (1.0 - s) * f);
        let distortion =
            curve.and_then(|c| interpolate(&c.sparsity, &c.distortion.combined(alloc.lambda), s));
        let opt = |v: Option<f64>| v.map(fmt_num).unwrap_or_default();
        let shape = if m.shape.is_empty() {
            "scalar".to_string()
        } else {
            m.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x")
        };
        let row = [
            csv_field(&l.name),
            shape,
            m.params().to_string(),
            opt(flops_dense),
            fmt_num(s),
            m.pruned.to_string(),
            m.kept().to_string(),
            opt(flops_kept),
            opt(distortion),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// Writes [`csv_report`] to `path`, atomically.
pub fn write_csv(
    path: &Path,
    alloc: &Allocation,
    masks: &[LayerMask],
    curves: Option<&Curves>,
    inputs: &[&Path],
) -> Result<(), ExportError> {
    if let Some(c) = curves
        && c.model.weights_sha256 != alloc.model.weights_sha256
    {
        return Err(ExportError::CurvesOfAnotherModel {
            curves_sha: c.model.weights_sha256.clone(),
            alloc_sha: alloc.model.weights_sha256.clone(),
        });
    }
    let text = csv_report(alloc, masks, curves)?;
    write_atomic(path, text.as_bytes(), inputs)?;
    Ok(())
}

/// The sha256 of a file, lowercase hex, read in 1 MiB chunks (weights files can be large).
pub fn sha256_file(path: &Path) -> Result<String, ExportError> {
    let read = |source| ExportError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read(e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_inside_the_levels_only() {
        let xs = [0.0, 0.5, 1.0];
        let ys = [0.0, 1.0, 3.0];
        assert_eq!(interpolate(&xs, &ys, 0.25), Some(0.5));
        assert_eq!(interpolate(&xs, &ys, 0.75), Some(2.0));
        assert_eq!(interpolate(&xs, &ys, 0.0), Some(0.0));
        assert_eq!(interpolate(&xs, &ys, 1.0), Some(3.0));
        assert_eq!(interpolate(&xs[..2], &ys[..2], 0.9), None);
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("a.b"), "a.b");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(fmt_num(0.3), "0.3");
        assert_eq!(fmt_num(1.5e-6), "1.5e-6");
    }

    #[test]
    fn parameters_encode_in_the_source_dtype() {
        let path = Path::new("w.safetensors");
        let values = [1.0f32 / 3.0, -2.5, 0.0, 7.0];
        let mask = [1u8, 1, 0, 0];
        fn p<'a>(values: &'a [f32], mask: Option<&'a [u8]>) -> Param<'a> {
            Param {
                values: Cow::Borrowed(values),
                shape: vec![values.len()],
                mask: mask.map(Cow::Borrowed),
            }
        }
        // A pruned position must hold 0: the 7.0 at index 3 is refused, naming it.
        let err = encode_param(path, "k", Dtype::F32, &p(&values, Some(&mask))).unwrap_err();
        assert!(err.to_string().contains("7 at flat index 3"), "{err}");
        let ok = [1u8, 1, 0, 1];
        let f32s = encode_param(path, "k", Dtype::F32, &p(&values, Some(&ok))).unwrap();
        assert_eq!(to_f32(Dtype::F32, &f32s).unwrap(), values);
        for dtype in [Dtype::F16, Dtype::BF16] {
            let bytes = encode_param(path, "k", dtype, &p(&values, Some(&ok))).unwrap();
            let back = to_f32(dtype, &bytes).unwrap();
            let round = |v: f32| match dtype {
                Dtype::F16 => half::f16::from_f32(v).to_f32(),
                _ => half::bf16::from_f32(v).to_f32(),
            };
            let want: Vec<f32> = values.iter().map(|&v| round(v)).collect();
            assert_eq!(back, want, "{dtype:?}");
            assert_eq!(&bytes[4..6], &[0, 0], "{dtype:?}: a pruned value is +0.0");
        }
        let big = [1e6f32];
        let err = encode_param(
            path,
            "k",
            Dtype::F16,
            &Param {
                values: Cow::Borrowed(&big[..]),
                shape: vec![1],
                mask: None,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("out of the range of F16"), "{err}");
        let err = encode_param(path, "k", Dtype::I64, &p(&values, None)).unwrap_err();
        assert!(err.to_string().contains("I64"), "{err}");
    }

    #[test]
    fn encoded_safetensors_keep_order_and_parse() {
        let a = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let t = [
            RawTensor {
                name: "z",
                dtype: Dtype::F32,
                shape: &[2],
                bytes: Cow::Borrowed(&a),
            },
            RawTensor {
                name: "a",
                dtype: Dtype::U8,
                shape: &[],
                bytes: Cow::Borrowed(&a[..1]),
            },
        ];
        let meta = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let bytes = encode_safetensors(&t, &meta);
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("z").unwrap().data(), &a);
        assert_eq!(st.tensor("a").unwrap().data(), &a[..1]);
        let (n, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(n % 8, 0);
        assert_eq!(m.metadata().as_ref().unwrap()["k"], "v");
        let header = String::from_utf8_lossy(&bytes[8..8 + n]);
        assert!(header.find("\"z\"").unwrap() < header.find("\"a\"").unwrap());
    }
}
