//! Reading checkpoints and savepoints of format 1 (Eddy before sectioned checkpoints),
//! so that a job upgraded to this Eddy resumes where it was.
//!
//! Format 1 was one positional struct holding every component's state. Its types are
//! frozen here, exactly as they were written, and [`upgrade`] turns one into the
//! sections of format 2 at their version 1. It writes each section's small state as a
//! tuple of the fields the component's own version-1 struct has, in order (bincode
//! encodes a struct as its fields in order), and its table keys with the layouts in
//! `section`. The golden savepoints under `tests/golden/` check the result restores into
//! the same output as an uninterrupted run.
//!
//! Invariant: nothing here changes when a component's section changes; a component that
//! moves its section to version 2 keeps reading version 1.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{state_key, window_key, Section, Snapshot};

/// The format this module reads.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Deserialize)]
struct SnapshotV1 {
    id: u64,
    created_ms: i64,
    savepoint: bool,
    base: Option<u64>,
    source: SourceV1,
    watermarks: WatermarksV1,
    plugins: Vec<PluginV1>,
    window: Option<WindowV1>,
    side_inputs: Vec<(String, u64)>,
    sinks: Vec<SinkV1>,
    metrics: MetricsV1,
}

#[derive(Deserialize, Serialize)]
struct SourceV1 {
    name: String,
    partitions: u32,
    position: PositionV1,
}

#[derive(Deserialize, Serialize)]
enum PositionV1 {
    File { offset: u64, line: u64 },
    Generator { next_seq: u64 },
    Unreplayable,
}

#[derive(Deserialize, Serialize)]
struct WatermarksV1 {
    partitions: Vec<Option<i64>>,
    current: i64,
}

#[derive(Deserialize)]
struct PluginV1 {
    name: String,
    hash: String,
    config: Vec<(String, String)>,
    state: Vec<(Vec<u8>, String, Vec<u8>)>,
    deleted: Vec<(Vec<u8>, String)>,
}

#[derive(Deserialize)]
struct WindowV1 {
    spec: String,
    watermark: i64,
    windows: Vec<(Vec<u8>, i64, i64, AccV1)>,
    removed: Vec<(Vec<u8>, i64, i64)>,
    counters: [u64; 4],
}

#[derive(Deserialize, Serialize)]
enum AccV1 {
    Count(u64),
    Sum(f64),
    Min(f64),
    Max(f64),
    Avg { sum: f64, count: u64 },
    Bytes(Vec<u8>),
}

#[derive(Deserialize)]
struct SinkV1 {
    role: String,
    path: std::path::PathBuf,
    committed_len: u64,
    epochs: Vec<(u64, u64)>,
}

#[derive(Deserialize, Serialize)]
struct MetricsV1 {
    records_in: u64,
    records_out: u64,
    unparseable: u64,
    rejected: u64,
    failed: u64,
    dead_letters: u64,
    batches: u64,
    firings: u64,
    late_accepted: u64,
    late_rejected: u64,
    watermark: i64,
    open_windows: u64,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(bincode::serde::encode_to_vec(
        value,
        bincode::config::standard(),
    )?)
}

/// Reads a format-1 payload as a format-2 snapshot.
pub fn upgrade(payload: &[u8]) -> Result<Snapshot> {
    let (old, _): (SnapshotV1, _) =
        bincode::serde::decode_from_slice(payload, bincode::config::standard())?;
    let mut sections = vec![
        Section::new("source", 1).with_meta(&old.source)?,
        Section::new("watermarks", 1).with_meta(&old.watermarks)?,
    ];
    for plugin in old.plugins {
        let mut section = Section::new(format!("plugin/{}", plugin.name), 1)
            .with_meta(&(plugin.hash, plugin.config))?;
        section.entries = plugin
            .state
            .into_iter()
            .map(|(key, name, value)| (state_key(&key, &name), value))
            .collect();
        section.removed = plugin
            .deleted
            .iter()
            .map(|(k, n)| state_key(k, n))
            .collect();
        sections.push(section);
    }
    if let Some(window) = old.window {
        let mut section = Section::new("window", 1).with_meta(&(
            window.spec,
            window.watermark,
            window.counters,
        ))?;
        section.entries = window
            .windows
            .iter()
            .map(|(key, start, end, acc)| Ok((window_key(key, *start, *end), encode(acc)?)))
            .collect::<Result<_>>()?;
        section.removed = window
            .removed
            .iter()
            .map(|(key, start, end)| window_key(key, *start, *end))
            .collect();
        sections.push(section);
    }
    for sink in old.sinks {
        sections.push(Section::new(format!("sink/{}", sink.role), 1).with_meta(&(
            sink.path,
            sink.committed_len,
            sink.epochs,
        ))?);
    }
    if !old.side_inputs.is_empty() {
        sections.push(Section::new("side-inputs", 1).with_meta(&old.side_inputs)?);
    }
    sections.push(Section::new("metrics", 1).with_meta(&old.metrics)?);
    Ok(Snapshot {
        id: old.id,
        created_ms: old.created_ms,
        savepoint: old.savepoint,
        base: old.base,
        sections,
    })
}
