//! `[sink] kind = "postgres"`.

use anyhow::{bail, Result};
use serde::Deserialize;

/// `[sink] kind = "postgres"`: each record becomes a row of a table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// The connection: `postgresql://user@host:port/db` or `host=... user=... dbname=...`.
    pub url: String,
    /// The table; each record's fields fill the columns of the same names.
    pub table: String,
    /// Columns of a unique key: with them, a record whose key exists updates that row
    /// (e.g. `["key", "window_start"]` for window results); without, records are inserted.
    #[serde(default)]
    pub upsert: Vec<String>,
    /// The partition task writing (in the names of its prepared transactions). Set by
    /// the workers, not the file.
    #[serde(skip)]
    pub identity_scope: Option<String>,
}

impl PostgresSinkConfig {
    /// Checks the settings that do not need the server.
    pub fn check(&self) -> Result<()> {
        if self.url.trim().is_empty() {
            bail!("[sink] url is empty; give the PostgreSQL connection, e.g. \"postgresql://eddy@127.0.0.1/eddy\"");
        }
        if self.table.trim().is_empty() {
            bail!("[sink] table is empty; name the table to write");
        }
        Ok(())
    }
}
