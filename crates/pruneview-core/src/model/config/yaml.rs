//! OpenPCDet YAML files, with `_BASE_CONFIG_` resolved as OpenPCDet does.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::ConfigError;

/// Reads an OpenPCDet YAML and resolves every `_BASE_CONFIG_` the way OpenPCDet's
/// `merge_new_config` does: keys are applied in file order; `_BASE_CONFIG_` loads the base
/// file (relative to the folder that holds `cfgs/`) and merges all of it in; later keys
/// override (dicts merge recursively, everything else is replaced).
pub fn load_yaml_merged(path: &Path) -> Result<Value, ConfigError> {
    let value = read_yaml(path)?;
    let mut out = Value::Object(Map::new());
    merge_new_config(&mut out, value, path, 0)?;
    Ok(out)
}

fn read_yaml(path: &Path) -> Result<Value, ConfigError> {
    let text =
        crate::io::read_text_limited(path, crate::io::MAX_CONFIG_BYTES).map_err(|source| {
            ConfigError::Io {
                path: path.to_path_buf(),
                source,
            }
        })?;
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|source| ConfigError::Yaml {
            path: path.to_path_buf(),
            source,
        })?;
    serde_json::to_value(yaml).map_err(|e| ConfigError::Field {
        path: path.to_path_buf(),
        field: "<root>".into(),
        problem: format!("cannot be represented as a config tree: {e}"),
    })
}

fn merge_new_config(
    config: &mut Value,
    new: Value,
    path: &Path,
    depth: usize,
) -> Result<(), ConfigError> {
    let Value::Object(new) = new else {
        *config = new;
        return Ok(());
    };
    if !config.is_object() {
        *config = Value::Object(Map::new());
    }
    for (key, val) in new {
        if key == "_BASE_CONFIG_" {
            let Some(base) = val.as_str().map(str::to_string) else {
                return Err(ConfigError::Field {
                    path: path.to_path_buf(),
                    field: "_BASE_CONFIG_".into(),
                    problem: "must be a path (a string)".into(),
                });
            };
            if depth > 16 {
                return Err(ConfigError::BaseCycle {
                    path: path.to_path_buf(),
                    base,
                });
            }
            let base_path = resolve_base(path, &base)?;
            let base_value = read_yaml(&base_path)?;
            if !base_value.is_object() {
                return Err(ConfigError::Field {
                    path: base_path,
                    field: "<root>".into(),
                    problem: format!(
                        "is the _BASE_CONFIG_ of {} but not a mapping of keys",
                        path.display()
                    ),
                });
            }
            let mut base_cfg = Value::Object(Map::new());
            merge_new_config(&mut base_cfg, base_value, &base_path, depth + 1)?;
            // OpenPCDet: `config.update(EasyDict(yaml_config))`: a shallow update.
            if let (Value::Object(dst), Value::Object(src)) = (&mut *config, base_cfg) {
                for (k, v) in src {
                    dst.insert(k, v);
                }
            }
            continue;
        }
        let Some(dst) = config.as_object_mut() else {
            continue;
        };
        if val.is_object() {
            let slot = dst.entry(key).or_insert_with(|| Value::Object(Map::new()));
            merge_new_config(slot, val, path, depth)?;
        } else {
            dst.insert(key, val);
        }
    }
    Ok(())
}

/// `_BASE_CONFIG_: cfgs/dataset_configs/x.yaml` is relative to OpenPCDet's `tools/` folder:
/// search the config's ancestors for a folder where it exists.
fn resolve_base(config_path: &Path, base: &str) -> Result<PathBuf, ConfigError> {
    let rel = Path::new(base);
    // Like OpenPCDet's, a base is relative to the folder holding `cfgs/`: an absolute path or
    // `..` would read files anywhere on the disk.
    if !rel.components().all(|c| {
        matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    }) {
        return Err(ConfigError::Field {
            path: config_path.to_path_buf(),
            field: "_BASE_CONFIG_".into(),
            problem: format!(
                "`{base}`: must be a path relative to the folder that holds cfgs/, without `..`"
            ),
        });
    }
    let abs = std::fs::canonicalize(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    for dir in abs.ancestors().skip(1) {
        let candidate = dir.join(rel);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    if rel.is_file() {
        return Ok(rel.to_path_buf());
    }
    Err(ConfigError::BaseNotFound {
        path: config_path.to_path_buf(),
        base: base.to_string(),
    })
}
