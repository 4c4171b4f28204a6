//! Side inputs: tables loaded from JSON-lines or CSV files, read by plugins with
//! `lookup(table, key)`, and reloaded when their file changes.
//!
//! A reload that fails (a half-written file, a malformed line) is logged and the table
//! keeps its last good version; each successful load bumps the table's version.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::{bail, Context, Result};

use crate::config::SideInputConfig;

/// Rows by key; each row is a JSON object.
type Rows = HashMap<Vec<u8>, Vec<u8>>;

/// One side-input table.
#[derive(Debug)]
struct Table {
    config: SideInputConfig,
    rows: RwLock<Arc<Rows>>,
    version: AtomicU64,
}

impl Table {
    fn reload(&self) {
        match load_rows(&self.config) {
            Ok(rows) => {
                *self.rows.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rows);
                let version = self.version.fetch_add(1, Ordering::SeqCst) + 1;
                tracing::info!(
                    "side input `{}` reloaded from {} (version {version})",
                    self.config.name,
                    self.config.path.display()
                );
            }
            Err(e) => tracing::warn!(
                "side input `{}`: keeping version {} because the reload failed: {e:#}",
                self.config.name,
                self.version.load(Ordering::SeqCst)
            ),
        }
    }
}

/// All side-input tables of a pipeline; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct SideInputs {
    tables: Arc<HashMap<String, Arc<Table>>>,
    _watcher: Option<Arc<notify::RecommendedWatcher>>,
}

impl SideInputs {
    /// Loads every table; with `watch`, reloads a table whenever its file changes.
    pub fn load(configs: &[SideInputConfig], watch: bool) -> Result<Self> {
        let mut tables = HashMap::new();
        for config in configs {
            let rows = load_rows(config)?;
            tables.insert(
                config.name.clone(),
                Arc::new(Table {
                    config: config.clone(),
                    rows: RwLock::new(Arc::new(rows)),
                    version: AtomicU64::new(1),
                }),
            );
        }
        let tables = Arc::new(tables);
        let watcher = if watch && !tables.is_empty() {
            Some(Arc::new(watch_tables(&tables)?))
        } else {
            None
        };
        Ok(Self {
            tables,
            _watcher: watcher,
        })
    }

    /// The row of `table` with key `key`; `None` when there is no such table.
    pub fn lookup(&self, table: &str, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let table = self.tables.get(table)?;
        let rows = table.rows.read().unwrap_or_else(|e| e.into_inner());
        Some(rows.get(key).cloned())
    }

    /// Each table's name and version (1 at load, +1 per successful reload).
    pub fn versions(&self) -> Vec<(String, u64)> {
        let mut versions: Vec<_> = self
            .tables
            .iter()
            .map(|(name, t)| (name.clone(), t.version.load(Ordering::SeqCst)))
            .collect();
        versions.sort();
        versions
    }
}

impl crate::checkpoint::Checkpointed for SideInputs {
    /// Records which version of each table the checkpoint's state was computed with
    /// (section `side-inputs`; informational: tables are reloaded from their files).
    fn snapshot(
        &mut self,
        _id: u64,
        _incremental: bool,
    ) -> Result<Option<crate::checkpoint::Section>> {
        if self.tables.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            crate::checkpoint::Section::new("side-inputs", 1).with_meta(&self.versions())?,
        ))
    }
}

/// How long a table's file must be quiet before it is reloaded, so a file written in
/// several steps (truncate, then write) is read once, whole.
const RELOAD_QUIET: std::time::Duration = std::time::Duration::from_millis(100);

/// Watches the tables' files and reloads a table once its file has changed and then been
/// quiet for [`RELOAD_QUIET`].
fn watch_tables(tables: &Arc<HashMap<String, Arc<Table>>>) -> Result<notify::RecommendedWatcher> {
    let tables: Vec<Arc<Table>> = tables.values().cloned().collect();
    let paths: Vec<PathBuf> = tables.iter().map(|t| t.config.path.clone()).collect();
    crate::file_watch::watch(&paths, "side-input files", RELOAD_QUIET, move |i| {
        tables[i].reload()
    })
}

/// Reads a table's file: CSV by the `.csv` extension, JSON lines otherwise.
fn load_rows(config: &SideInputConfig) -> Result<Rows> {
    let path = &config.path;
    let what = || format!("side input `{}` ({})", config.name, path.display());
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", what()))?;
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        csv_rows(&text, &config.key_field)
    } else {
        json_rows(&text, &config.key_field)
    }
    .with_context(what)
}

fn json_rows(text: &[u8], key_field: &str) -> Result<Rows> {
    let mut rows = Rows::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let row: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line)
            .with_context(|| format!("line {} is not a JSON object", i + 1))?;
        let key = match row.get(key_field) {
            Some(serde_json::Value::String(s)) => s.clone().into_bytes(),
            Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                v.to_string().into_bytes()
            }
            _ => bail!(
                "line {} has no string or number field `{key_field}` (the key)",
                i + 1
            ),
        };
        rows.insert(key, line.to_vec());
    }
    Ok(rows)
}

fn csv_rows(text: &[u8], key_field: &str) -> Result<Rows> {
    let mut reader = csv::Reader::from_reader(text);
    let headers = reader
        .headers()
        .context("cannot read the CSV header")?
        .clone();
    let key_column = headers
        .iter()
        .position(|h| h == key_field)
        .with_context(|| format!("the CSV header has no column `{key_field}` (the key)"))?;
    let mut rows = Rows::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("CSV record {} is malformed", i + 1))?;
        // A side-input table has one row per line: a value spanning lines is almost
        // always an unterminated quote that swallowed the rows after it.
        if let Some((column, _)) = headers
            .iter()
            .zip(record.iter())
            .find(|(_, v)| v.contains('\n'))
        {
            let line = record.position().map_or(0, |p| p.line());
            bail!(
                "CSV record {} (line {line}): the value of `{column}` spans lines; \
                 is a quote left open? (side-input values are one line each)",
                i + 1
            );
        }
        let row: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .zip(record.iter())
            .map(|(h, v)| (h.to_owned(), serde_json::Value::String(v.to_owned())))
            .collect();
        let key = record
            .get(key_column)
            .unwrap_or_default()
            .as_bytes()
            .to_vec();
        rows.insert(key, serde_json::to_vec(&row)?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::{Duration, Instant};

    fn config(dir: &Path, file: &str) -> SideInputConfig {
        SideInputConfig {
            name: "users".into(),
            path: dir.join(file),
            key_field: "user".into(),
        }
    }

    #[test]
    fn a_csv_value_left_open_by_a_quote_is_an_error_naming_the_row() {
        let text = b"user,tier\nu1,\"gold\nu2,silver\nu3,bronze\n";
        let err = format!("{:#}", csv_rows(text, "user").unwrap_err());
        assert!(
            err.contains("CSV record 1 (line 2)") && err.contains("`tier` spans lines"),
            "{err}"
        );
        assert_eq!(
            csv_rows(b"user,tier\nu1,\"gold, plus\"\n", "user")
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn loads_json_lines_and_csv() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("u.jsonl"),
            "{\"user\":\"u1\",\"tier\":\"gold\"}\n\n{\"user\":2}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("u.csv"), "user,tier\nu1,\"gold, plus\"\n").unwrap();
        let json = SideInputs::load(&[config(dir.path(), "u.jsonl")], false).unwrap();
        let row = json.lookup("users", b"u1").unwrap().unwrap();
        assert_eq!(row, br#"{"user":"u1","tier":"gold"}"#);
        assert!(json.lookup("users", b"2").unwrap().is_some());
        assert_eq!(json.lookup("users", b"u3"), Some(None));
        assert_eq!(json.lookup("nope", b"u1"), None);
        let csv = SideInputs::load(&[config(dir.path(), "u.csv")], false).unwrap();
        let row: serde_json::Value =
            serde_json::from_slice(&csv.lookup("users", b"u1").unwrap().unwrap()).unwrap();
        assert_eq!(row["tier"], "gold, plus");
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!(
            "{:#}",
            SideInputs::load(&[config(dir.path(), "missing.jsonl")], false)
                .err()
                .unwrap()
        );
        assert!(
            err.contains("users") && err.contains("missing.jsonl"),
            "{err}"
        );
        std::fs::write(dir.path().join("bad.jsonl"), "{\"user\":\"u1\"}\n{oops\n").unwrap();
        let err = format!(
            "{:#}",
            SideInputs::load(&[config(dir.path(), "bad.jsonl")], false)
                .err()
                .unwrap()
        );
        assert!(err.contains("line 2"), "{err}");
        std::fs::write(dir.path().join("nokey.csv"), "id,tier\n1,x\n").unwrap();
        let err = format!(
            "{:#}",
            SideInputs::load(&[config(dir.path(), "nokey.csv")], false)
                .err()
                .unwrap()
        );
        assert!(err.contains("no column `user`"), "{err}");
    }

    #[test]
    fn reloads_when_the_file_changes_and_keeps_the_old_version_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.jsonl");
        std::fs::write(&path, "{\"user\":\"u1\",\"v\":1}\n").unwrap();
        let tables = SideInputs::load(&[config(dir.path(), "u.jsonl")], true).unwrap();
        // Each version is renamed into place, as deploy tools do: a file rewritten in
        // place is empty between its truncation and its write, a valid empty table that
        // a reload on a stalled machine could read.
        let replace = |text: &str| {
            let staged = dir.path().join("u.jsonl.new");
            std::fs::write(&staged, text).unwrap();
            std::fs::rename(&staged, &path).unwrap();
        };
        replace("{\"user\":\"u1\",\"v\":2}\n");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tables.lookup("users", b"u1") != Some(Some(br#"{"user":"u1","v":2}"#.to_vec())) {
            assert!(Instant::now() < deadline, "the table was not reloaded");
            std::thread::sleep(Duration::from_millis(20));
        }
        let version = tables.versions()[0].1;
        assert!(version >= 2);
        replace("{broken\n");
        std::thread::sleep(RELOAD_QUIET * 4);
        assert_eq!(
            tables.lookup("users", b"u1").unwrap().unwrap(),
            br#"{"user":"u1","v":2}"#
        );
    }
}
