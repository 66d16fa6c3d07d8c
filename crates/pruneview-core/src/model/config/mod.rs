//! The detector's configuration, read from an OpenPCDet model YAML (with `_BASE_CONFIG_`
//! resolved the way OpenPCDet does) or from the JSON a safetensors file carries in its
//! `__metadata__["pruneview.config"]`.
//!
//! Both are first merged into one JSON value, then turned into typed structs here, so every
//! missing or malformed field becomes an error that names the file and the field's path.
//!
//! Files: [`types`] (the typed config), [`yaml`] (reading YAML and the `_BASE_CONFIG_`
//! merge), [`parse`] (the merged tree to typed structs, with bounds on what sizes buffers).

mod parse;
#[cfg(test)]
mod tests;
mod types;
mod yaml;

use std::path::{Path, PathBuf};

pub use types::*;
pub use yaml::load_yaml_merged;

/// Metadata key under which a safetensors file may carry its config as JSON.
pub const CONFIG_METADATA_KEY: &str = "pruneview.config";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid YAML: {source}")]
    Yaml {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{path}: not valid JSON config: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path}: _BASE_CONFIG_ `{base}` not found relative to any ancestor folder of the config (OpenPCDet resolves it against the folder that holds `cfgs/`)"
    )]
    BaseNotFound { path: PathBuf, base: String },
    #[error("{path}: _BASE_CONFIG_ chain is too deep (a cycle?) at `{base}`")]
    BaseCycle { path: PathBuf, base: String },
    #[error("{path}: {field}: {problem}")]
    Field {
        path: PathBuf,
        field: String,
        problem: String,
    },
    #[error(
        "{path}: has no `{key}` in its safetensors metadata; pass --config with the model's YAML"
    )]
    NoEmbeddedConfig { path: PathBuf, key: &'static str },
}

/// Reads the config for `weights_path`: from `config_path` when given (YAML, or JSON if the
/// extension says so), else from the weights' embedded metadata.
pub fn load_config(
    config_path: Option<&Path>,
    embedded: Option<(&Path, Option<&String>)>,
) -> Result<DetectorConfig, ConfigError> {
    if let Some(path) = config_path {
        let value = if path.extension().is_some_and(|e| e == "json") {
            let text = crate::io::read_text_limited(path, crate::io::MAX_CONFIG_BYTES).map_err(
                |source| ConfigError::Io {
                    path: path.to_path_buf(),
                    source,
                },
            )?;
            serde_json::from_str(&text).map_err(|source| ConfigError::Json {
                path: path.to_path_buf(),
                source,
            })?
        } else {
            load_yaml_merged(path)?
        };
        return DetectorConfig::from_value(value, path);
    }
    match embedded {
        Some((path, Some(text))) => {
            let value = serde_json::from_str(text).map_err(|source| ConfigError::Json {
                path: path.to_path_buf(),
                source,
            })?;
            DetectorConfig::from_value(value, path)
        }
        Some((path, None)) => Err(ConfigError::NoEmbeddedConfig {
            path: path.to_path_buf(),
            key: CONFIG_METADATA_KEY,
        }),
        None => Err(ConfigError::NoEmbeddedConfig {
            path: PathBuf::from("<no weights>"),
            key: CONFIG_METADATA_KEY,
        }),
    }
}
