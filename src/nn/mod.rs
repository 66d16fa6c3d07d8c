//! CPU numeric kernels. They know nothing of detectors: plain f32 buffers with explicit
//! layouts (row-major, channels-first feature maps without a batch dimension).

pub mod tensor;

pub use tensor::Tensor;
