//! Fully connected layer, `y = x W^T + b` (PyTorch `nn.Linear`): `x` `[..., in]`, `W`
//! `[out, in]`, `y` `[..., out]`. Leading dimensions are flattened, so PointPillars' PFN input
//! `[pillars, 32, 10]` goes through in one GEMM.

use super::gemm::{Finish, View, matmul};
use super::kernel::Isa;
use super::{NnError, Tensor, shape_err};

/// `y = x W^T (+ b)` over the last axis of `x`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&[f32]>) -> Result<Tensor, NnError> {
    linear_isa(x, weight, bias, Isa::detect())
}

/// [`linear`] with an explicit instruction set (for tests).
pub fn linear_isa(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&[f32]>,
    isa: Isa,
) -> Result<Tensor, NnError> {
    const OP: &str = "linear";
    let (out_f, in_f) = match weight.shape[..] {
        [o, i] => (o, i),
        _ => return Err(shape_err(OP, "weight", "[out, in]", &weight.shape)),
    };
    let rows = match x.shape.split_last() {
        Some((&last, lead)) if last == in_f => lead.iter().product::<usize>(),
        _ => return Err(shape_err(OP, "input", format!("[..., {in_f}]"), &x.shape)),
    };
    if let Some(b) = bias
        && b.len() != out_f
    {
        return Err(shape_err(OP, "bias", format!("[{out_f}]"), &[b.len()]));
    }
    let mut shape = x.shape.clone();
    if let Some(last) = shape.last_mut() {
        *last = out_f;
    }
    // The bias runs along C's columns: start from it and accumulate the product.
    let mut y = vec![0f32; rows * out_f];
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(out_f.max(1)) {
            row.copy_from_slice(b);
        }
    }
    let fin = Finish {
        accumulate: true,
        bias: None,
        relu: false,
    };
    matmul(
        isa,
        rows,
        out_f,
        in_f,
        View::row_major(&x.data, in_f),
        View::transposed(&weight.data, in_f),
        &mut y,
        fin,
    );
    Ok(Tensor { shape, data: y })
}
