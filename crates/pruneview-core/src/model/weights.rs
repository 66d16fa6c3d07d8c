//! Weights from a safetensors file, memory-mapped and checked before use.
//!
//! Every tensor is converted to f32 on request (f32, f16 and bf16 are accepted), and each
//! problem a user's file can have (truncated, corrupt header, wrong dtype, missing key, wrong
//! shape) becomes an error that names the file and the key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, TensorInfo};

use crate::nn::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: cannot read this safetensors file: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: missing tensor `{key}`{hint}")]
    Missing {
        path: PathBuf,
        key: String,
        hint: String,
    },
    #[error("{path}: tensor `{key}` has shape {found:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error(
        "{path}: tensor `{key}` has dtype {dtype}; only F32, F16 and BF16 can be used as weights"
    )]
    Dtype {
        path: PathBuf,
        key: String,
        dtype: String,
    },
    #[error("{path}: tensor `{key}` holds non-finite values (NaN or infinity)")]
    NonFinite { path: PathBuf, key: String },
    #[error("{path}: tensor `{key}`: {problem}")]
    Invalid {
        path: PathBuf,
        key: String,
        problem: String,
    },
}

/// A memory-mapped safetensors file. Keys that the model reads are recorded so that unused
/// keys can be reported afterwards.
pub struct Weights {
    path: PathBuf,
    mmap: Mmap,
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
    metadata: BTreeMap<String, String>,
    used: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Weights {
    /// Maps `path` and validates its header and every tensor's byte range.
    pub fn open(path: &Path) -> Result<Self, WeightsError> {
        let io = |source| WeightsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            let what = if meta.is_dir() {
                "is a folder, not a file"
            } else {
                "not a regular file (a device, pipe or socket)"
            };
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                what,
            )));
        }
        // SAFETY: the file is opened read-only; like every mmap reader we assume nobody
        // truncates it while we hold the map.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let corrupt = |reason: String| WeightsError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        if mmap.len() < 8 {
            return Err(corrupt(format!(
                "file is {} bytes, shorter than the 8-byte header length",
                mmap.len()
            )));
        }
        let (header_len, metadata): (usize, Metadata) =
            safetensors::SafeTensors::read_metadata(&mmap)
                .map_err(|e| corrupt(describe_safetensors_error(&e, mmap.len())))?;
        // read_metadata has checked that every tensor's byte range lies inside the file.
        let data_start = 8 + header_len;
        let tensors = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.clone()))
            .collect();
        let meta = metadata.metadata().clone().unwrap_or_default();
        Ok(Weights {
            path: path.to_path_buf(),
            mmap,
            data_start,
            tensors,
            metadata: meta.into_iter().collect(),
            used: Mutex::new(BTreeSet::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's `__metadata__` map (e.g. `pruneview.config`).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// All keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.tensors.keys().cloned().collect();
        k.sort();
        k
    }

    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.tensors.get(key).map(|t| t.shape.as_slice())
    }

    /// Raw bytes and dtype of a tensor, as stored.
    pub fn raw(&self, key: &str) -> Option<(Dtype, &[usize], &[u8])> {
        let info = self.tensors.get(key)?;
        let (s, e) = info.data_offsets;
        Some((
            info.dtype,
            &info.shape,
            &self.mmap[self.data_start + s..self.data_start + e],
        ))
    }

    /// Reads `key` as f32, checking that its shape is `expected`.
    pub fn tensor(&self, key: &str, expected: &[usize]) -> Result<Tensor, WeightsError> {
        let t = self.tensor_any_shape(key)?;
        if t.shape != expected {
            return Err(WeightsError::Shape {
                path: self.path.clone(),
                key: key.to_string(),
                expected: expected.to_vec(),
                found: t.shape,
            });
        }
        Ok(t)
    }

    /// Reads a sparse-conv weight as spconv 2.3's `[Cout, kz, ky, kx, Cin]` (`expected`).
    /// Model-zoo checkpoints saved with spconv 1.x store `[kz, ky, kx, Cin, Cout]`; like
    /// OpenPCDet's `Detector3DTemplate._load_state_dict`, the layout is told apart by shape
    /// (the expected one first) and converted. Any other shape is an error naming the key.
    pub fn sparse_conv_weight(
        &self,
        key: &str,
        expected: [usize; 5],
    ) -> Result<Tensor, WeightsError> {
        let t = self.tensor_any_shape(key)?;
        if t.shape == expected {
            return Ok(t);
        }
        if !is_spconv1_of(&t.shape, &expected) {
            return Err(WeightsError::Shape {
                path: self.path.clone(),
                key: key.to_string(),
                expected: expected.to_vec(),
                found: t.shape,
            });
        }
        let data = from_file_layout(&t.data, &expected, &t.shape);
        Ok(Tensor::from_vec(&expected, data))
    }

    /// Reads `key` as f32 whatever its shape.
    pub fn tensor_any_shape(&self, key: &str) -> Result<Tensor, WeightsError> {
        let Some((dtype, shape, bytes)) = self.raw(key) else {
            return Err(WeightsError::Missing {
                path: self.path.clone(),
                key: key.to_string(),
                hint: self.missing_hint(key),
            });
        };
        let data = to_f32(dtype, bytes).ok_or_else(|| WeightsError::Dtype {
            path: self.path.clone(),
            key: key.to_string(),
            dtype: format!("{dtype:?}"),
        })?;
        if data.iter().any(|v| !v.is_finite()) {
            return Err(WeightsError::NonFinite {
                path: self.path.clone(),
                key: key.to_string(),
            });
        }
        if let Ok(mut used) = self.used.lock() {
            used.insert(key.to_string());
        }
        Ok(Tensor::from_vec(shape, data))
    }

    /// Keys never read by the model, except bookkeeping buffers a checkpoint always carries
    /// (`global_step`, BatchNorm `num_batches_tracked`).
    pub fn unused_keys(&self) -> Vec<String> {
        let used = self.used.lock().map(|u| u.clone()).unwrap_or_default();
        self.keys()
            .into_iter()
            .filter(|k| {
                !used.contains(k) && k != "global_step" && !k.ends_with(".num_batches_tracked")
            })
            .collect()
    }

    fn missing_hint(&self, key: &str) -> String {
        // A common cause: a checkpoint saved from a wrapped module (`module.` prefix) or a
        // config that does not match the weights.
        if self.tensors.contains_key(&format!("module.{key}")) {
            return " (the file has `module.`-prefixed keys: export `model_state` without the DataParallel wrapper)".into();
        }
        let prefix = key.rsplit_once('.').map(|(p, _)| p).unwrap_or(key);
        let parent = prefix.rsplit_once('.').map(|(p, _)| p).unwrap_or(prefix);
        let mut near: Vec<&String> = self
            .tensors
            .keys()
            .filter(|k| k.starts_with(parent))
            .collect();
        near.sort();
        if near.is_empty() {
            " (does the config match these weights?)".into()
        } else {
            let list: Vec<&str> = near.iter().take(4).map(|s| s.as_str()).collect();
            format!(
                " (does the config match these weights? nearby keys: {})",
                list.join(", ")
            )
        }
    }
}

/// Converts little-endian f32 / f16 / bf16 bytes to f32; `None` for other dtypes.
pub fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    match dtype {
        Dtype::F32 => Some(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        Dtype::F16 => Some(
            bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        ),
        Dtype::BF16 => Some(
            bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        ),
        _ => None,
    }
}

fn describe_safetensors_error(e: &safetensors::SafeTensorError, file_len: usize) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooLarge | E::HeaderTooSmall | E::InvalidHeaderLength => {
            format!("header length field is invalid for a {file_len}-byte file ({e})")
        }
        E::MetadataIncompleteBuffer => {
            format!(
                "tensor data is incomplete: the file is {file_len} bytes but the header describes more (truncated file?)"
            )
        }
        other => other.to_string(),
    }
}

/// spconv 1.x's `[kz, ky, kx, Cin, Cout]` of a sparse-conv weight that spconv 2.3 (and the
/// detector) holds as `[Cout, kz, ky, kx, Cin]`; `None` for a shape that is not 5-D.
fn spconv1_shape(native: &[usize]) -> Option<[usize; 5]> {
    let &[cout, kz, ky, kx, cin] = native else {
        return None;
    };
    Some([kz, ky, kx, cin, cout])
}

/// Whether a file stores a weight the detector holds as `native` in spconv 1.x's layout (and
/// not in the detector's own): its values, masks included, must then be reordered.
pub fn is_spconv1_of(file_shape: &[usize], native: &[usize]) -> bool {
    file_shape != native && spconv1_shape(native).is_some_and(|v1| file_shape == v1)
}

/// The values of a weight held by the detector as `native`, in the element order of a file
/// that stores it as `file_shape` (spconv 1.x's `[tap][ci][co]`, or as they are).
pub fn to_file_layout<T: Clone + Default>(
    data: &[T],
    native: &[usize],
    file_shape: &[usize],
) -> Vec<T> {
    reorder(data, native, file_shape, true)
}

/// The inverse of [`to_file_layout`]: a file's values (shape `file_shape`) in the order of
/// the detector's `native` shape (spconv 2.3's `[co][tap][ci]`).
pub fn from_file_layout<T: Clone + Default>(
    data: &[T],
    native: &[usize],
    file_shape: &[usize],
) -> Vec<T> {
    reorder(data, native, file_shape, false)
}

/// `[co][tap][ci]` to `[tap][ci][co]` (`to_file`) or back, when the file is spconv 1.x's
/// layout of `native`; a copy otherwise.
fn reorder<T: Clone + Default>(
    data: &[T],
    native: &[usize],
    file_shape: &[usize],
    to_file: bool,
) -> Vec<T> {
    let Ok([cout, kz, ky, kx, cin]) = <[usize; 5]>::try_from(native) else {
        return data.to_vec();
    };
    if !is_spconv1_of(file_shape, native) {
        return data.to_vec();
    }
    let taps = kz * ky * kx;
    let mut out = vec![T::default(); data.len()];
    for tap in 0..taps {
        for ci in 0..cin {
            for co in 0..cout {
                let (n, f) = ((co * taps + tap) * cin + ci, (tap * cin + ci) * cout + co);
                let (dst, src) = if to_file { (f, n) } else { (n, f) };
                out[dst] = data[src].clone();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{OutTensor, write_safetensors};

    /// The SECOND fixture's f16 spconv 2.3 weight reads as is; the same weight saved in
    /// spconv 1.x's layout reads back identical; any other shape names the key.
    #[test]
    fn sparse_conv_weights_in_both_spconv_layouts() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/reference/second_kitti_000008/weights.safetensors");
        let key = "backbone_3d.conv2.0.0.weight";
        let w = Weights::open(&fixture).unwrap();
        let native = w.sparse_conv_weight(key, [32, 3, 3, 3, 16]).unwrap();
        assert!(native.data.iter().any(|&v| v != 0.0));
        // [co][tap][ci] -> spconv 1.x [tap][ci][co], spelled out as the reference.
        let mut old = vec![0f32; native.data.len()];
        for co in 0..32 {
            for tap in 0..27 {
                for ci in 0..16 {
                    old[(tap * 16 + ci) * 32 + co] = native.data[(co * 27 + tap) * 16 + ci];
                }
            }
        }
        let v1 = [3, 3, 3, 16, 32];
        assert_eq!(to_file_layout(&native.data, &native.shape, &v1), old);
        assert_eq!(from_file_layout(&old, &native.shape, &v1), native.data);
        assert_eq!(
            to_file_layout(&native.data, &native.shape, &native.shape),
            native.data
        );
        assert!(is_spconv1_of(&[3, 3, 3, 16, 32], &native.shape));
        assert!(!is_spconv1_of(&native.shape, &native.shape));
        let dir = std::env::temp_dir().join(format!("pruneview-spconv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v1.safetensors");
        let t = [OutTensor::f32(key, &[3, 3, 3, 16, 32], &old)];
        write_safetensors(&path, &t, None, &[]).unwrap();
        let v1 = Weights::open(&path).unwrap();
        let converted = v1.sparse_conv_weight(key, [32, 3, 3, 3, 16]).unwrap();
        assert_eq!(converted.shape, native.shape);
        assert_eq!(converted.data, native.data);
        let err = v1
            .sparse_conv_weight(key, [32, 3, 3, 3, 8])
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains("v1.safetensors"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
