//! A model opened for pruning: the detector, its weights file and what the panels and
//! reports say about it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::detect::Detector;
use crate::model::Weights;
use crate::progress::Control;
use crate::prune::curves::ModelInfo;
use crate::prune::export;
use crate::prune::probe::{self, PrunableLayer};

use super::{Result, fail};

/// A loaded model (cheap to clone: shared handles).
#[derive(Clone)]
pub struct LoadedModel {
    pub det: Arc<Detector>,
    pub weights: Arc<Weights>,
    pub config_path: Option<PathBuf>,
    pub weights_path: PathBuf,
    /// Name and sha256 of the weights, recorded in every file made from them.
    pub info: ModelInfo,
    /// Parameters of the whole model (prunable or not).
    pub total_params: usize,
    /// FLOPs at the calibration scans' mean size (an empty scan before any is loaded).
    pub layers: Vec<PrunableLayer>,
}

impl LoadedModel {
    pub fn architecture(&self) -> String {
        let c = &self.det.config;
        let head = match c.head {
            crate::model::config::HeadConfig::Anchor(_) => "anchor head",
            crate::model::config::HeadConfig::Center(_) => "CenterPoint head",
        };
        format!("{} ({:?} VFE, {head})", c.model_name, c.vfe.kind)
    }

    pub fn classes(&self) -> String {
        self.det.config.class_names.join(", ")
    }
}

/// The name and sha256 of a model's weights file.
pub fn model_info(det: &Detector, weights: &std::path::Path) -> Result<ModelInfo> {
    Ok(ModelInfo {
        name: det.config.model_name.clone(),
        weights_sha256: export::sha256_file(weights).map_err(fail)?,
    })
}

pub fn load_model(
    config: Option<PathBuf>,
    weights_path: PathBuf,
    ctl: &Control,
) -> Result<LoadedModel> {
    ctl.step(0, 3, "reading the weights");
    let det = Detector::load(config.as_deref(), &weights_path).map_err(fail)?;
    ctl.check()?;
    ctl.step(1, 3, "mapping the tensors");
    let weights = Weights::open(&weights_path).map_err(fail)?;
    // Learned values only: BatchNorm's running statistics are buffers, not parameters.
    let total_params = weights
        .keys()
        .iter()
        .filter(|k| !k.contains("running_") && !k.ends_with("num_batches_tracked"))
        .filter_map(|k| weights.shape(k))
        .map(|s| s.iter().product::<usize>())
        .sum();
    ctl.step(2, 3, "sha256 of the weights");
    let info = model_info(&det, &weights_path)?;
    let layers = probe::layer_table(&det, &crate::detect::ScanCost::default());
    ctl.step(3, 3, "done");
    Ok(LoadedModel {
        info,
        det: Arc::new(det),
        weights: Arc::new(weights),
        config_path: config,
        weights_path,
        total_params,
        layers,
    })
}
