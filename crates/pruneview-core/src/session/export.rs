//! Writing what a pruning produced: masks, pruned (or recovered) weights, the allocation, the
//! per-layer CSV and the curves, each file atomically (a failure leaves no partial file).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::detect::Detector;
use crate::io::write_atomic;
use crate::model::Weights;
use crate::progress::Control;
use crate::prune::export::{
    self, ALLOCATION_FILE, CSV_FILE, CURVES_FILE, LayerMask, MASKS_FILE, Orders, PRUNED_FILE,
};
use crate::prune::recover::RecoveryReport;
use crate::prune::{Allocation, Curves, Ranking, rank};

use super::recover::recovery_metadata;
use super::{Result, fail};

/// Where to write each file (`None`: not written).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExportFiles {
    pub masks: Option<PathBuf>,
    pub pruned: Option<PathBuf>,
    pub allocation: Option<PathBuf>,
    pub csv: Option<PathBuf>,
    pub curves: Option<PathBuf>,
}

impl ExportFiles {
    /// Every file, under the standard names of `dir`.
    pub fn all_in(dir: &Path) -> ExportFiles {
        ExportFiles {
            masks: Some(dir.join(MASKS_FILE)),
            pruned: Some(dir.join(PRUNED_FILE)),
            allocation: Some(dir.join(ALLOCATION_FILE)),
            csv: Some(dir.join(CSV_FILE)),
            curves: Some(dir.join(CURVES_FILE)),
        }
    }

    pub fn paths(&self) -> Vec<&Path> {
        [
            &self.masks,
            &self.pruned,
            &self.allocation,
            &self.csv,
            &self.curves,
        ]
        .into_iter()
        .filter_map(|p| p.as_deref())
        .collect()
    }

    /// Refuses, before any work, no output at all, two outputs at one path and an output
    /// that is an input.
    pub fn check(&self, inputs: &[&Path]) -> Result<()> {
        let paths = self.paths();
        if paths.is_empty() {
            return Err("nothing to export: choose at least one file".into());
        }
        check_outputs(&paths, inputs)
    }
}

/// Refuses, before any work, two outputs at one path, an output that is one of the inputs
/// (compared after resolving links and `..`, so another spelling of a path is caught too,
/// also of files that do not exist yet) and an output that cannot be written.
pub fn check_outputs(outputs: &[&Path], inputs: &[&Path]) -> Result<()> {
    let resolved = |p: &Path| crate::io::resolved(p);
    for (i, p) in outputs.iter().enumerate() {
        if outputs[..i].iter().any(|q| resolved(q) == resolved(p)) {
            return Err(format!("{}: given for two outputs", p.display()).into());
        }
        if inputs.iter().any(|q| resolved(q) == resolved(p)) {
            return Err(format!(
                "{}: the output is one of the inputs; refusing to overwrite an input file, \
                 choose another output path",
                p.display()
            )
            .into());
        }
        crate::io::check_writable(p).map_err(fail)?;
    }
    Ok(())
}

/// A recovered model, written as the pruned weights instead of the masked input.
pub struct Recovered<'a> {
    pub det: &'a Detector,
    /// Per unit, its mask (`None`: dense).
    pub masks: &'a [Option<Vec<u8>>],
    pub report: &'a RecoveryReport,
}

/// Metadata key and value that mark a Gauss-Newton diagonal side file (`curves --ranking
/// saliency`), so that a weights file passed as one is refused rather than used as scores.
pub const SALIENCY_KIND_KEY: &str = "pruneview.kind";
pub const SALIENCY_KIND: &str = "gauss-newton-diagonal";

/// Saliency orders from a Gauss-Newton diagonal file.
fn saliency_orders(
    path: &Path,
    weights: &Weights,
    alloc: &Allocation,
) -> Result<HashMap<String, Vec<u32>>> {
    let diag = Weights::open(path).map_err(fail)?;
    if diag.metadata().get(SALIENCY_KIND_KEY).map(String::as_str) != Some(SALIENCY_KIND) {
        return Err(format!(
            "{}: not a Gauss-Newton diagonal file (the `.saliency.safetensors` that `curves \
             --ranking saliency` writes next to its curves)",
            path.display()
        )
        .into());
    }
    alloc
        .layers
        .iter()
        .map(|l| {
            let w = weights.tensor_any_shape(&l.name).map_err(fail)?;
            let d = diag.tensor(&l.name, &w.shape).map_err(fail)?;
            Ok((l.name.clone(), rank::saliency_order(&w.data, &d.data)))
        })
        .collect()
}

/// The masks of `alloc` for `weights` (magnitude order, or the saliency orders of the
/// curves' side file), the weights' sha256, and a warning when the allocation was computed
/// for another file.
pub fn allocation_masks(
    weights: &Weights,
    alloc: &Allocation,
    saliency: Option<&Path>,
) -> Result<(Vec<LayerMask>, String, Option<String>)> {
    let sha = export::sha256_file(weights.path()).map_err(fail)?;
    let warning = (alloc.model.weights_sha256 != sha).then(|| {
        format!(
            "{} (sha256 {sha}) is not the file the allocation was computed for ({})",
            weights.path().display(),
            alloc.model.weights_sha256
        )
    });
    let given;
    let orders = match alloc.ranking {
        Ranking::Magnitude if saliency.is_some() => {
            return Err(
                "the allocation ranks weights by magnitude, so --saliency would not be used; \
                 drop it, or solve on curves computed with --ranking saliency"
                    .into(),
            );
        }
        Ranking::Magnitude => Orders::Magnitude,
        Ranking::Saliency => {
            let path = saliency.ok_or(
                "the allocation uses the saliency ranking: pass --saliency <curves>.saliency.safetensors",
            )?;
            given = saliency_orders(path, weights, alloc)?;
            Orders::Given(&given)
        }
    };
    let masks = export::build_masks(alloc, weights, orders).map_err(fail)?;
    Ok((masks, sha, warning))
}

/// What [`write`] writes from.
pub struct ExportInputs<'a> {
    pub weights: &'a Weights,
    pub alloc: &'a Allocation,
    pub masks: &'a [LayerMask],
    /// sha256 of the weights file (recorded in the masks).
    pub sha: &'a str,
    /// For the CSV's FLOPs and predicted columns, and the curves file.
    pub curves: Option<&'a Curves>,
    pub recovered: Option<Recovered<'a>>,
    /// Files the outputs must never replace.
    pub inputs: &'a [&'a Path],
}

/// Writes the chosen files (parent folders created); returns what was written.
pub fn write(from: &ExportInputs, files: &ExportFiles, ctl: &Control) -> Result<Vec<PathBuf>> {
    files.check(from.inputs)?;
    if let Some(c) = from.curves
        && c.model.weights_sha256 != from.alloc.model.weights_sha256
    {
        // Checked before the first file is written (write_csv checks it too).
        return Err(fail(export::ExportError::CurvesOfAnotherModel {
            curves_sha: c.model.weights_sha256.clone(),
            alloc_sha: from.alloc.model.weights_sha256.clone(),
        }));
    }
    if files.curves.is_some() && from.curves.is_none() {
        return Err("a curves file was asked for but there are no curves".into());
    }
    let total = files.paths().len();
    // Files of one folder (what `prune` and the app write) appear together or not at all.
    let folder = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut folders: Vec<PathBuf> = files.paths().into_iter().map(folder).collect();
    folders.dedup();
    let staged = match folders.as_slice() {
        [one] => Some(crate::io::StagedDir::begin(one).map_err(fail)?),
        _ => None,
    };
    let mut written: Vec<PathBuf> = Vec::new();
    let (alloc, inputs) = (from.alloc, from.inputs);
    let mut out = |p: &Option<PathBuf>, what: &str, f: &dyn Fn(&Path) -> Result<()>| {
        let Some(p) = p else { return Ok(()) };
        ctl.check()?;
        ctl.step(written.len(), total, what);
        let at = match (&staged, p.file_name()) {
            (Some(s), Some(name)) => s.dir().join(name),
            _ => {
                let dir = folder(p);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("{}: cannot create the folder: {e}", dir.display()))?;
                p.clone()
            }
        };
        f(&at)?;
        written.push(p.clone());
        Ok::<(), super::Error>(())
    };
    out(&files.masks, "masks", &|p| {
        export::write_masks(p, from.masks, alloc, from.sha, inputs).map_err(fail)
    })?;
    out(&files.pruned, "pruned weights", &|p| {
        match &from.recovered {
            None => export::write_pruned(p, from.weights, from.masks, alloc, inputs),
            Some(r) => {
                let mut meta = recovery_metadata(r.report);
                meta.insert(export::META_ALLOCATION.to_string(), alloc.to_json());
                export::write_recovered(p, from.weights, r.det, r.masks, &meta, inputs)
            }
        }
        .map_err(fail)
    })?;
    out(&files.allocation, "allocation", &|p| {
        write_atomic(p, alloc.to_json().as_bytes(), inputs).map_err(fail)
    })?;
    out(&files.csv, "per-layer report", &|p| {
        export::write_csv(p, alloc, from.masks, from.curves, inputs).map_err(fail)
    })?;
    out(&files.curves, "curves", &|p| {
        let curves = from.curves.ok_or("no curves")?;
        write_atomic(p, curves.to_json().as_bytes(), inputs).map_err(fail)
    })?;
    if let Some(s) = staged {
        ctl.check()?;
        s.commit().map_err(fail)?;
    }
    ctl.step(total, total, "done");
    Ok(written)
}
