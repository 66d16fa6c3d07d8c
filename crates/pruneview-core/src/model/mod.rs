//! The model: its OpenPCDet config, its weights and its prunable-layer table.

pub mod config;
pub mod weights;

pub use config::{DetectorConfig, load_config};
pub use weights::{Weights, WeightsError};
