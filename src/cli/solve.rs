//! `solve`: per-layer sparsities under a budget, from a curves file.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use pruneview::io::write_atomic;
use pruneview::model::Weights;
use pruneview::prune::alloc::{Constraint, Method};
use pruneview::prune::{Allocation, Budget, BudgetKind, Curves};
use pruneview::session::plan::solve_allocation;

use super::args::{LambdaArgs, parse_bins, parse_layer_cap};

#[derive(Args, Debug, Clone)]
pub struct SolveArgs {
    /// Keep at most this fraction of the layers' FLOPs (e.g. 0.25 = 4x fewer).
    #[arg(
        long,
        value_name = "F",
        conflicts_with = "params_keep",
        required_unless_present = "params_keep"
    )]
    pub flops_keep: Option<f64>,
    /// Keep at most this fraction of the layers' parameters.
    #[arg(long, value_name = "F")]
    pub params_keep: Option<f64>,
    /// dp (distortion-minimising), or a baseline: uniform, global (magnitude), lamp, erk.
    #[arg(long, default_value = "dp")]
    pub method: Method,
    #[command(flatten)]
    pub lambdas: LambdaArgs,
    /// Budget bins of the DP (costs are rounded up: never over budget).
    #[arg(long, default_value_t = pruneview::prune::alloc::DEFAULT_BINS, value_parser = parse_bins)]
    pub bins: usize,
    /// Keep these layers dense (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    pub lock: Vec<String>,
    /// Per-layer minimum sparsity, `NAME=S` (repeatable).
    #[arg(long, value_name = "NAME=S")]
    pub min_sparsity: Vec<String>,
    /// Per-layer maximum sparsity, `NAME=S` (repeatable).
    #[arg(long, value_name = "NAME=S")]
    pub max_sparsity: Vec<String>,
    /// The DP prunes a layer past this sparsity only when the budget cannot be met otherwise
    /// (recovery cannot revive a layer pruned almost away); 1 turns it off. Baselines ignore it.
    #[arg(long, value_name = "S", default_value_t = pruneview::prune::alloc::DEFAULT_LAYER_CAP, value_parser = parse_layer_cap)]
    pub layer_cap: f64,
    /// Which curves the allocation trades: the predicted ones, or the measured curves of
    /// `curves --measured all` (with `--measured-after-stats`: recovery-aware).
    #[arg(long, value_enum, default_value = "predicted")]
    pub on: CurveSource,
}

/// The curves an allocation is computed on.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurveSource {
    Predicted,
    Measured,
}

impl SolveArgs {
    fn budget(&self) -> Result<Budget> {
        let (kind, keep) = match (self.flops_keep, self.params_keep) {
            (Some(f), _) => (BudgetKind::Flops, f),
            (None, Some(p)) => (BudgetKind::Params, p),
            (None, None) => bail!("give --flops-keep or --params-keep"),
        };
        if !(0.0..=1.0).contains(&keep) {
            bail!("the budget must be a fraction in [0, 1], got {keep}");
        }
        Ok(Budget { kind, keep })
    }

    fn constraints(&self) -> Result<HashMap<String, Constraint>> {
        let mut c: HashMap<String, Constraint> = HashMap::new();
        let full = |n: &str| {
            if n.ends_with(".weight") {
                n.to_string()
            } else {
                format!("{n}.weight")
            }
        };
        for n in &self.lock {
            c.entry(full(n)).or_default().locked = true;
        }
        for (list, is_min) in [(&self.min_sparsity, true), (&self.max_sparsity, false)] {
            for item in list {
                let (n, s) = item
                    .split_once('=')
                    .with_context(|| format!("`{item}`: expected NAME=S"))?;
                let s: f64 = s
                    .parse()
                    .with_context(|| format!("`{item}`: `{s}` is not a number"))?;
                let e = c.entry(full(n)).or_default();
                if is_min {
                    e.min_sparsity = s;
                } else {
                    e.max_sparsity = s;
                }
            }
        }
        for (name, k) in &c {
            if k.locked && k.min_sparsity > 0.0 {
                bail!(
                    "{name}: --lock keeps it dense, but --min-sparsity asks for {}; give one",
                    k.min_sparsity
                );
            }
        }
        Ok(c)
    }
}

#[derive(Args, Debug)]
pub struct SolveCmd {
    #[arg(long, value_name = "curves.json")]
    pub curves: PathBuf,
    #[command(flatten)]
    pub solve: SolveArgs,
    /// Weights (needed by the global and lamp baselines).
    #[arg(long, value_name = "W.safetensors")]
    pub weights: Option<PathBuf>,
    /// Where to write the allocation (`pruneview-allocation/1` JSON).
    #[arg(long, value_name = "alloc.json")]
    pub out: PathBuf,
}

/// Solves one allocation and prints it.
pub(super) fn solve_and_print(
    curves: &Curves,
    args: &SolveArgs,
    weights: Option<&Weights>,
) -> Result<Allocation> {
    let measured;
    let curves = match args.on {
        CurveSource::Predicted => curves,
        CurveSource::Measured => {
            measured = curves.on_measured().map_err(anyhow::Error::msg)?;
            &measured
        }
    };
    let (alloc, warnings) = solve_allocation(
        curves,
        weights,
        args.method,
        args.budget()?,
        args.lambdas.get(),
        &args.constraints()?,
        args.layer_cap,
        args.bins,
    )?;
    print_allocation(&alloc)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(alloc)
}

fn print_allocation(a: &Allocation) -> Result<()> {
    outln!("{:<48} {:>9}", "layer", "sparsity")?;
    for l in &a.layers {
        outln!("{:<48} {:>9.3}", l.name, l.sparsity)?;
    }
    outln!(
        "method {}: FLOPs kept {:.2}% ({:.2}x fewer, {:.2} of {:.2} GFLOPs), params kept {:.2}%, predicted distortion {:.6e}",
        a.method,
        a.flops_kept * 100.0,
        1.0 / a.flops_kept.max(1e-12),
        a.flops / 1e9,
        a.flops_dense / 1e9,
        a.params_kept * 100.0,
        a.predicted_distortion
    )?;
    Ok(())
}

pub fn solve(a: SolveCmd) -> Result<()> {
    let mut inputs = vec![a.curves.as_path()];
    inputs.extend(a.weights.as_deref());
    pruneview::session::export::check_outputs(&[&a.out], &inputs)?;
    let curves = Curves::load(&a.curves)?;
    let weights = a.weights.as_deref().map(Weights::open).transpose()?;
    let alloc = solve_and_print(&curves, &a.solve, weights.as_ref())?;
    write_atomic(&a.out, alloc.to_json().as_bytes(), &inputs)?;
    Ok(())
}
