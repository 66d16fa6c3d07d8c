//! CPU numeric kernels. They know nothing of detectors: plain f32 buffers with explicit
//! layouts (row-major, channels-first feature maps without a batch dimension).
//!
//! - [`Conv2d`] / [`conv2d`]: 2-D convolution (PyTorch weight layout `[Cout, Cin, kH, kW]`),
//!   with three algorithms behind one dispatcher ([`ConvAlgo`]): Winograd F(4x4, 3x3) for 3x3
//!   stride-1 convs, an implicit GEMM (im2col without the buffer) for everything else, and a
//!   portable im2col + `gemm`-crate path for CPUs without AVX-512.
//! - [`ConvTranspose2d`] / [`conv_transpose2d`]: transposed convolution (`[Cin, Cout, kH, kW]`).
//! - [`linear`]: `y = x W^T + b`.
//! - [`fold_batchnorm`], [`batchnorm_inplace`], [`relu_inplace`].
//! - [`vjp`]: vector-Jacobian products of the above, for the pruning core's second-order curves.
//! - [`gram`]: Gram matrices of layer inputs, for the layer-wise least squares of recovery.
//! - [`sparse`]: sparse 3-D convolution (spconv's `SubMConv3d` / `SparseConv3d`) by rulebook,
//!   for the voxel detectors' backbones.
//!
//! Threading: every entry point parallelises with rayon over independent output blocks and
//! runs single-threaded micro-kernels inside them, so callers get all cores without nested
//! thread pools. Scratch memory is per thread and reused across calls ([`release_scratch`]).
//!
//! Memory: reuse outputs (`forward_into`, [`linear_into`]). On the reference VM a fresh 4 KiB
//! page costs ~2.5 us to fault in, so a new 13.7 MB feature map costs ~8 ms: as much as the
//! convolution that fills it. Speeds per layer are in `benches/nn.rs`.

mod conv;
mod conv_transpose;
mod gemm;
pub mod gram;
mod kernel;
mod linear;
mod norm;
mod scratch;
pub mod sparse;
pub mod tensor;
pub mod vjp;
mod winograd;

pub use conv::{Conv2d, Conv2dParams, ConvAlgo, conv2d};
pub use conv_transpose::{ConvTranspose2d, conv_transpose2d};
pub use kernel::Isa;
pub use linear::{linear, linear_into, linear_isa};
pub use norm::{BatchNorm, batchnorm_inplace, fold_batchnorm, relu_inplace};
pub use scratch::release_scratch;
pub use tensor::Tensor;

/// A shape problem in the tensors handed to a kernel (e.g. weights that do not match the
/// feature map they are applied to). Programming errors (impossible internal states) panic.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A tensor has the wrong rank or size.
    #[error("{op}: {what} should be {expected}, but its shape is {got:?}")]
    Shape {
        op: &'static str,
        what: &'static str,
        expected: String,
        got: Vec<usize>,
    },
    /// Hyper-parameters that cannot describe a valid layer (stride 0, kernel larger than input).
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
}

pub(crate) fn shape_err(
    op: &'static str,
    what: &'static str,
    expected: impl Into<String>,
    got: &[usize],
) -> NnError {
    NnError::Shape {
        op,
        what,
        expected: expected.into(),
        got: got.to_vec(),
    }
}
