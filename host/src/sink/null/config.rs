//! `[sink] kind = "null"`.

use serde::Deserialize;

/// Counts records and drops them (for benchmarks); no settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NullSinkConfig {}
