//! `[sink] kind = "file"` (also `[dead_letter]` and `[late]`).

use std::path::PathBuf;

use serde::Deserialize;

/// A file of JSON lines.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file. Without checkpoints it is created or truncated when the run starts;
    /// with them it is transactional (see the module).
    pub path: PathBuf,
}
