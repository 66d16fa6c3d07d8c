//! `grad`: the detector's weight gradients for given output probes (a check against
//! OpenPCDet's autograd).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use pruneview::detect::RawOutputs;
use pruneview::io::{OutTensor, write_safetensors};
use pruneview::model::Weights;

use super::{ModelArgs, ScanArgs};

#[derive(Args, Debug)]
pub struct GradArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, value_name = "S.bin")]
    pub scan: PathBuf,
    #[command(flatten)]
    pub scan_args: ScanArgs,
    /// Safetensors holding `probe.<output>` (f16 or f32) for each raw head output.
    #[arg(long, value_name = "P.safetensors")]
    pub probe: PathBuf,
    /// Output: `grad.<param name>` for every weight and bias.
    #[arg(long, value_name = "OUT.safetensors")]
    pub dump: PathBuf,
}

pub fn grad(a: GradArgs) -> Result<()> {
    let mut inputs = a.model.inputs();
    inputs.push(&a.scan);
    inputs.push(&a.probe);
    pruneview::session::export::check_outputs(&[&a.dump], &inputs)?;
    let det = a.model.load()?;
    let scan = a.scan_args.prepare(&det, &a.scan)?;
    let probes = Weights::open(&a.probe)?;
    let taped = det.forward_taped(&scan.points)?;
    let mut v = RawOutputs::default();
    for o in &taped.out.raw.outputs {
        let name = &o.name;
        let p = probes
            .tensor(&format!("probe.{name}"), &o.tensor.shape)
            .with_context(|| format!("{}: reading the probe of `{name}`", a.probe.display()))?;
        v.outputs.push(o.like(p));
    }
    let grads = det.backward(&taped, &v)?;
    let tensors: Vec<OutTensor> = det
        .named_grads(&grads)
        .iter()
        .map(|(n, t)| OutTensor::f32(format!("grad.{n}"), &t.shape, &t.data))
        .collect();
    let meta = HashMap::from([("producer".to_string(), "pruneview grad".to_string())]);
    write_safetensors(&a.dump, &tensors, Some(meta), &inputs)?;
    eprintln!("{}: {} gradients", a.dump.display(), tensors.len());
    Ok(())
}
