//! Reading manifests for the CLI: a file or stdin (`-`), split into YAML documents.

use std::io::Read;

use serde_json::Value;

use super::CliError;

/// Reads a file, or stdin when `path` is `-`.
pub fn read(path: &str) -> Result<String, CliError> {
    let io = |source| CliError::Io {
        path: path.to_owned(),
        source,
    };
    if path == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(io)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).map_err(io)
    }
}

/// The non-empty YAML documents of a stream, as JSON values, with their 1-based index.
pub fn documents(path: &str, text: &str) -> Result<Vec<(usize, Value)>, CliError> {
    let mut docs = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).map_err(|e| {
            CliError::Manifest {
                path: path.to_owned(),
                message: format!("document {}: invalid YAML: {e}", i + 1),
            }
        })?;
        if value.is_null() {
            continue;
        }
        let json = serde_json::to_value(&value).map_err(|e| CliError::Manifest {
            path: path.to_owned(),
            message: format!("document {}: {e}", i + 1),
        })?;
        docs.push((i + 1, json));
    }
    Ok(docs)
}
