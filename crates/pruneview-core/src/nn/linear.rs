//! Fully connected layer, `y = x W^T + b` (PyTorch `nn.Linear`): `x` `[..., in]`, `W`
//! `[out, in]`, `y` `[..., out]`. Leading dimensions are flattened, so PointPillars' PFN input
//! `[pillars, 32, 10]` goes through in one GEMM.

use super::gemm::{Finish, View, matmul};
use super::kernel::Isa;
use super::{NnError, Tensor, shape_err};

/// `y = x W^T (+ b)` over the last axis of `x`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&[f32]>) -> Result<Tensor, NnError> {
    let mut y = Tensor::default();
    linear_into_isa(x, weight, bias, &mut y, Isa::detect())?;
    Ok(y)
}

/// [`linear`] writing into `out` (reshaped; its allocation is reused when large enough, which
/// saves the page faults of a fresh output per call: 98 MB for the PFN at 12k pillars).
pub fn linear_into(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&[f32]>,
    out: &mut Tensor,
) -> Result<(), NnError> {
    linear_into_isa(x, weight, bias, out, Isa::detect())
}

/// [`linear`] with an explicit instruction set (for tests).
pub fn linear_isa(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&[f32]>,
    isa: Isa,
) -> Result<Tensor, NnError> {
    let mut y = Tensor::default();
    linear_into_isa(x, weight, bias, &mut y, isa)?;
    Ok(y)
}

fn linear_into_isa(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&[f32]>,
    out: &mut Tensor,
    isa: Isa,
) -> Result<(), NnError> {
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
    out.shape.clone_from(&x.shape);
    if let Some(last) = out.shape.last_mut() {
        *last = out_f;
    }
    out.data.resize(rows * out_f, 0.0);
    let fin = Finish {
        col_bias: bias,
        ..Finish::default()
    };
    matmul(
        isa,
        rows,
        out_f,
        in_f,
        View::row_major(&x.data, in_f),
        View::transposed(&weight.data, in_f),
        &mut out.data,
        fin,
    );
    Ok(())
}
