//! `[sink] kind = "stdout"` and `kind = "stderr"`.

use serde::Deserialize;

/// JSON lines on standard output or standard error; no settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StdioSinkConfig {}
